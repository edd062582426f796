/**
 * Small helpers shared by this package's webgpu programs. Only the public surface of
 * @tensorflow/tfjs-backend-webgpu 4.22 is used (its deep-path helpers do not load in Node ESM),
 * and only as types, so this package does not need the webgpu backend at run time.
 */
import type {TensorInfo} from '@tensorflow/tfjs-core';
import type {WebGPUBackend, WebGPUProgram} from '@tensorflow/tfjs-backend-webgpu';

export type {WebGPUBackend, WebGPUProgram};

/** One programDefinedUniform entry of `runWebGPUProgram` (not exported by tfjs 4.22). */
export interface ProgramUniformEntry {
  type: 'int32'|'uint32'|'float32';
  data: number[];
}
export type ProgramUniforms = ProgramUniformEntry[];

/**
 * The entry-point header tfjs expects after the user code (its `getMainHeaderString`):
 * `fn main(index : i32)` for a dispatch layout with only x dims, `fn main()` otherwise.
 */
export function mainHeader(indexName?: string): string {
  return indexName === undefined ? 'fn main()' : `fn main(${indexName} : i32)`;
}

/** A dispatch layout over all output dims in x, so the shader gets `main(index)`. */
export function flatLayout(rank: number): {x: number[]} {
  return {x: Array.from({length: rank}, (_, i) => i)};
}

/**
 * WGSL: the linear index of this workgroup, also after tfjs folded a dispatch wider than
 * maxComputeWorkgroupsPerDimension into y and z (the `workgroupId`/`numWorkgroups` privates
 * come from tfjs's prelude).
 */
export const WORKGROUP_INDEX_WGSL =
    'i32(workgroupId.z * numWorkgroups.x * numWorkgroups.y + ' +
    'workgroupId.y * numWorkgroups.x + workgroupId.x)';

/** Workgroup limits of the backend's device (WebGPU defaults where a limit is unavailable). */
export function deviceLimits(backend: WebGPUBackend):
    {invocations: number, storageBytes: number, sizeX: number} {
  const limits = (backend as unknown as {device?: {limits?: Record<string, number>}})
                     .device?.limits ?? {};
  return {
    invocations: limits.maxComputeInvocationsPerWorkgroup ?? 256,
    storageBytes: limits.maxComputeWorkgroupStorageSize ?? 16384,
    sizeX: limits.maxComputeWorkgroupSizeX ?? 256,
  };
}

/** The parts of a GPUAdapterInfo this package reads. */
export interface AdapterInfoLike {
  vendor?: unknown;
  architecture?: unknown;
  device?: unknown;
  description?: unknown;
}

/** Whether adapter info names a CPU implementation of WebGPU (SwiftShader, llvmpipe, lavapipe). */
export function isSoftwareAdapterInfo(info: AdapterInfoLike|null|undefined): boolean {
  if (info === null || info === undefined) return false;
  const text = [info.architecture, info.device, info.description]
                   .map((v) => String(v ?? '').toLowerCase()).join(' ');
  return /swiftshader|llvmpipe|lavapipe|software/.test(text);
}

/**
 * Whether the backend's adapter runs shaders on the CPU (SwiftShader: Dawn reports vendor
 * 'google', architecture 'swiftshader'). Reads tfjs's copy of the adapter info (a field its
 * typings mark private) and, where that is missing or says nothing, the device's own
 * `adapterInfo` (WebGPU's GPUDevice.adapterInfo).
 */
export function isSoftwareAdapter(backend: WebGPUBackend): boolean {
  const b = backend as unknown as {adapterInfo?: AdapterInfoLike, device?: {adapterInfo?: AdapterInfoLike}};
  return isSoftwareAdapterInfo(b.adapterInfo) || isSoftwareAdapterInfo(b.device?.adapterInfo);
}

/**
 * Threads a software adapter runs workgroups on: the host's logical cores
 * (`navigator.hardwareConcurrency`, in browsers and Node ≥ 21), else 4.
 */
export function softwareAdapterThreads(): number {
  const cores = (globalThis as {navigator?: {hardwareConcurrency?: number}}).navigator
                    ?.hardwareConcurrency;
  return typeof cores === 'number' && cores >= 1 ? Math.floor(cores) : 4;
}

/**
 * After a program wrote into an existing tensor in place (`runWebGPUProgram(..., output)`),
 * drops the values the backend may have cached on the CPU by an earlier `data()`, so the next
 * read sees the GPU buffer instead of stale values.
 */
export function invalidateCpuCopy(backend: WebGPUBackend, info: TensorInfo): void {
  const data = backend.tensorMap.get(info.dataId) as {values?: unknown, resource?: unknown};
  if (data !== undefined && data.resource != null) data.values = null;
}
