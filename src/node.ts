/**
 * Node.js setup of the tfjs `webgpu` backend (entry point `tfjs-mla/node`).
 *
 * Node has no WebGPU of its own: the optional npm package `webgpu` (Dawn) provides it. On a
 * machine without a GPU, Dawn needs a Vulkan driver it accepts; SwiftShader (a CPU Vulkan,
 * shipped with Debian's `chromium` package as `vk_swiftshader_icd.json`) works, while
 * Mesa's lavapipe in Debian 12 is rejected. This module points the Vulkan loader at
 * SwiftShader when nothing else is configured, installs the WebGPU globals, imports
 * `@tensorflow/tfjs-backend-webgpu` and activates the `webgpu` backend.
 *
 * ```ts
 * import * as tf from '@tensorflow/tfjs-core';
 * import 'tfjs-mla';
 * import {initNodeWebGPU, releaseNodeWebGPU} from 'tfjs-mla/node';
 * try {
 *   const {adapterInfo} = await initNodeWebGPU();
 * } catch (e) {
 *   await tf.setBackend('cpu');   // no WebGPU here: fall back
 * }
 * // ... only async reads on webgpu in Node: `await t.data()`, never `dataSync()`.
 * await releaseNodeWebGPU();      // let the process exit
 * ```
 *
 * Everything is imported dynamically, so importing this module costs nothing and works
 * where neither `webgpu` nor the tfjs webgpu backend is installed (initNodeWebGPU then throws).
 */
import * as tf from '@tensorflow/tfjs-core';

// Node's own modules are imported dynamically and typed here by hand, so this file needs no
// @types/node and its .d.ts stays free of Node types.
declare const process: {
  env: Record<string, string|undefined>;
  platform: string;
  execPath: string;
  execArgv: string[];
  argv: string[];
  exit(code: number): never;
};
interface NodeFs {
  existsSync(file: string): boolean;
  readdirSync(folder: string): string[];
  realpathSync(file: string): string;
}
interface NodeModules {
  fs: NodeFs;
  dirname(file: string): string;
  join(...parts: string[]): string;
  tmpdir(): string;
  logicalCores(): number;
}
async function nodeModules(): Promise<NodeModules> {
  const [fs, path, os] = await Promise.all(
      [importOptional('node:fs'), importOptional('node:path'), importOptional('node:os')]);
  const logicalCores = (): number =>
      typeof os.availableParallelism === 'function' ? os.availableParallelism() : os.cpus().length;
  return {fs, dirname: path.dirname, join: path.join, tmpdir: os.tmpdir, logicalCores};
}

export interface NodeWebGPUOptions {
  /**
   * A Vulkan ICD manifest to use (sets `VK_ICD_FILENAMES`). Default: keep a configured one
   * (`VK_ICD_FILENAMES`/`VK_DRIVER_FILES` set, or a driver other than lavapipe installed in
   * the standard ICD folders), else the SwiftShader ICD found by probing common paths.
   */
  icdPath?: string;
  /** Use SwiftShader even when another Vulkan driver is installed. Default false. */
  forceSwiftShader?: boolean;
  /**
   * When an installed Vulkan driver gives no adapter (e.g. a GPU container without graphics
   * capabilities), retry once with SwiftShader. Default true. Not done when `icdPath` is given
   * or VK_ICD_FILENAMES/VK_DRIVER_FILES were set by the caller.
   */
  fallbackToSwiftShader?: boolean;
  /** A SwiftShader ICD manifest to prefer over the probed locations. */
  swiftShaderIcdPath?: string;
  /** Options for the `webgpu` package's `create()`, e.g. `['backend=vulkan']`. Default []. */
  dawnOptions?: string[];
}

export interface NodeWebGPUInfo {
  backend: 'webgpu';
  /** The adapter's GPUAdapterInfo fields (vendor, architecture, device, description). */
  adapterInfo: {vendor: string, architecture: string, device: string, description: string};
  /** The ICD manifest this call put into VK_ICD_FILENAMES, if it set one. */
  icdPath?: string;
}

/** Where Debian/Ubuntu chromium, Chrome and common builds put the SwiftShader ICD. */
const SWIFTSHADER_ICD_CANDIDATES = [
  '/usr/lib/chromium/vk_swiftshader_icd.json',
  '/usr/lib/chromium-browser/vk_swiftshader_icd.json',
  '/usr/lib64/chromium/vk_swiftshader_icd.json',
  '/usr/lib64/chromium-browser/vk_swiftshader_icd.json',
  '/snap/chromium/current/usr/lib/chromium-browser/vk_swiftshader_icd.json',
  '/opt/google/chrome/vk_swiftshader_icd.json',
  '/opt/google/chrome-beta/vk_swiftshader_icd.json',
  '/opt/google/chrome-unstable/vk_swiftshader_icd.json',
  '/usr/local/lib/vk_swiftshader_icd.json',
  '/usr/lib/x86_64-linux-gnu/vk_swiftshader_icd.json',
  '/usr/lib/aarch64-linux-gnu/vk_swiftshader_icd.json',
];

/** The standard folders the Vulkan loader scans for driver manifests. */
const ICD_FOLDERS = [
  '/etc/vulkan/icd.d',
  '/usr/local/etc/vulkan/icd.d',
  '/usr/share/vulkan/icd.d',
  '/usr/local/share/vulkan/icd.d',
];

/** The `webgpu` package's GPU object, kept to be dropped by releaseNodeWebGPU. */
let gpuRef: unknown = null;

/** The first existing SwiftShader ICD manifest (`preferred` first), or undefined. */
export async function findSwiftShaderICD(preferred?: string): Promise<string|undefined> {
  const {fs, dirname, join} = await nodeModules();
  const candidates = [...SWIFTSHADER_ICD_CANDIDATES];
  // Next to a chromium found through CHROME_BIN (e.g. /usr/lib/chromium/chromium).
  const chromeBin = process.env.CHROME_BIN;
  if (chromeBin) {
    try {
      candidates.unshift(join(dirname(fs.realpathSync(chromeBin)),
                                   'vk_swiftshader_icd.json'));
    } catch {
      // CHROME_BIN does not exist: ignore it.
    }
  }
  if (preferred !== undefined) candidates.unshift(preferred);
  return candidates.find((file) => fs.existsSync(file));
}

/** Whether a Vulkan driver other than lavapipe/SwiftShader is installed or configured. */
function otherVulkanDriverConfigured(fs: NodeFs): boolean {
  const env = process.env;
  if (env.VK_ICD_FILENAMES || env.VK_DRIVER_FILES || env.VK_ADD_DRIVER_FILES) return true;
  for (const folder of ICD_FOLDERS) {
    let files: string[];
    try {
      files = fs.readdirSync(folder);
    } catch {
      continue;
    }
    // lavapipe (lvp_icd*) is rejected by Dawn; a SwiftShader manifest here is fine to skip too.
    if (files.some((f) => f.endsWith('.json') && !/^lvp_icd|swiftshader/i.test(f))) return true;
  }
  return false;
}

/** Whether the Vulkan loader (libvulkan.so.1, which Dawn loads) is on the library path. */
function vulkanLoaderFound(fs: NodeFs): boolean {
  const folders = [
    ...(process.env.LD_LIBRARY_PATH ?? '').split(':').filter((f) => f !== ''),
    '/lib/x86_64-linux-gnu', '/usr/lib/x86_64-linux-gnu', '/lib/aarch64-linux-gnu',
    '/usr/lib/aarch64-linux-gnu', '/lib64', '/usr/lib64', '/lib', '/usr/lib', '/usr/local/lib',
  ];
  return folders.some((folder) => fs.existsSync(`${folder}/libvulkan.so.1`));
}

/** Folders that ship a libvulkan.so.1 of their own (Debian's chromium, next to SwiftShader). */
const BUNDLED_VULKAN_LOADER_FOLDERS = ['/usr/lib/chromium', '/usr/lib/chromium-browser'];
const RERUN_MARKER = 'TFJS_MLA_VULKAN_RERUN';

/**
 * For scripts (demos, benchmarks): Dawn needs the Vulkan loader libvulkan.so.1, and the
 * dynamic loader reads LD_LIBRARY_PATH only when a process starts. When none is on the library
 * path but Debian's chromium ships one, this runs the current script again in a child process
 * with that folder on LD_LIBRARY_PATH and exits with the child's status; otherwise (a loader
 * is there, not Linux, already re-run, or nothing to use) it returns and does nothing.
 */
export async function rerunWithVulkanLoader(): Promise<void> {
  if (process.platform !== 'linux' || process.env[RERUN_MARKER] === '1') return;
  const {fs, join} = await nodeModules();
  if (vulkanLoaderFound(fs)) return;
  const bundled = BUNDLED_VULKAN_LOADER_FOLDERS.find((f) => fs.existsSync(join(f, 'libvulkan.so.1')));
  if (bundled === undefined) return;  // initNodeWebGPU will say what is missing
  const childProcess = await importOptional('node:child_process');
  const libraryPath = [bundled, process.env.LD_LIBRARY_PATH].filter(Boolean).join(':');
  const child = childProcess.spawnSync(
      process.execPath, [...process.execArgv, ...process.argv.slice(1)],
      {stdio: 'inherit', env: {...process.env, [RERUN_MARKER]: '1', LD_LIBRARY_PATH: libraryPath}});
  process.exit(child.status ?? 1);
}

/** A dynamic import that TypeScript does not try to resolve (both packages are optional). */
async function importOptional(specifier: string): Promise<any> {  // eslint-disable-line
  return import(specifier);
}

/**
 * Makes the tfjs `webgpu` backend work in Node and activates it.
 *
 * 1. Sets `VK_ICD_FILENAMES` to the SwiftShader ICD (`options.icdPath`, or probed at
 *    /usr/lib/chromium/vk_swiftshader_icd.json and other common paths) when it is unset and
 *    no other Vulkan driver is configured (or when `forceSwiftShader`), and sets
 *    `XDG_RUNTIME_DIR` (to the OS temp folder) when it is unset.
 * 2. `import('webgpu')`, `Object.assign(globalThis, globals)`, and
 *    `globalThis.navigator = {gpu: create(dawnOptions)}` unless `navigator.gpu` exists.
 * 3. Imports `@tensorflow/tfjs-backend-webgpu` (which registers the backend) and runs
 *    `await tf.setBackend('webgpu')`.
 *
 * If an installed driver gives no adapter, it retries once on SwiftShader (see
 * `fallbackToSwiftShader`). Returns `{backend: 'webgpu', adapterInfo}`. Throws an Error
 * saying why when a package is missing or no WebGPU adapter is found; the caller can then
 * fall back to `cpu`. Idempotent.
 * Remember: `dataSync()`/`arraySync()` of webgpu tensors throw in Node; use `await data()`.
 */
export async function initNodeWebGPU(options: NodeWebGPUOptions = {}): Promise<NodeWebGPUInfo> {
  const env = process.env;
  const {fs, tmpdir, logicalCores} = await nodeModules();
  const callerChoseDriver = options.icdPath !== undefined ||
      Boolean(env.VK_ICD_FILENAMES || env.VK_DRIVER_FILES);
  let icdPath: string|undefined;
  if (options.icdPath !== undefined) {
    if (!fs.existsSync(options.icdPath)) {
      throw new Error(`initNodeWebGPU: icdPath ${options.icdPath} does not exist`);
    }
    icdPath = options.icdPath;
  } else if (options.forceSwiftShader || !otherVulkanDriverConfigured(fs)) {
    icdPath = await findSwiftShaderICD(options.swiftShaderIcdPath);
  }
  if (icdPath !== undefined) env.VK_ICD_FILENAMES = icdPath;
  if (!env.XDG_RUNTIME_DIR) {
    env.XDG_RUNTIME_DIR = tmpdir();
  }

  const g = globalThis as any;  // eslint-disable-line
  let webgpu: any = null;  // eslint-disable-line
  const installGPU = () => {
    const gpu = webgpu.create(options.dawnOptions ?? []);
    gpuRef = gpu;
    if (g.navigator === undefined) {
      // Node 20 has no navigator: hardwareConcurrency as Node ≥ 21 reports it (the kernels'
      // plans for SwiftShader size their workgroup counts by it).
      g.navigator = {gpu, hardwareConcurrency: logicalCores()};
    } else {
      // Node ≥ 21 has a read-only global navigator without gpu.
      Object.defineProperty(g.navigator, 'gpu', {value: gpu, configurable: true, writable: true});
    }
  };
  if (!g.navigator?.gpu) {
    try {
      webgpu = await importOptional('webgpu');
    } catch (e) {
      throw new Error(`initNodeWebGPU: cannot import the npm package 'webgpu' (Dawn for ` +
                      `Node; install it with \`npm install webgpu\`): ${(e as Error).message}`);
    }
    Object.assign(globalThis, webgpu.globals);
    installGPU();
  }

  let adapter = await g.navigator.gpu.requestAdapter();
  if (!adapter && webgpu !== null && icdPath === undefined && !callerChoseDriver &&
      options.fallbackToSwiftShader !== false) {
    // The installed driver gave nothing: a fresh Dawn instance on SwiftShader.
    const swiftShader = await findSwiftShaderICD(options.swiftShaderIcdPath);
    if (swiftShader !== undefined) {
      icdPath = swiftShader;
      env.VK_ICD_FILENAMES = swiftShader;
      installGPU();
      adapter = await g.navigator.gpu.requestAdapter();
    }
  }
  if (!adapter) {
    const loaderHint = vulkanLoaderFound(fs) ? '' :
        ' No Vulkan loader libvulkan.so.1 was found: install it (Debian: `apt-get install ' +
        'libvulkan1`) or start node with LD_LIBRARY_PATH=/usr/lib/chromium (chromium ships one).';
    throw new Error('initNodeWebGPU: no WebGPU adapter found (VK_ICD_FILENAMES=' +
                    `${env.VK_ICD_FILENAMES ?? '<unset>'}; SwiftShader comes with Debian's ` +
                    '`chromium` package as vk_swiftshader_icd.json).' + loaderHint +
                    ' Fall back to the cpu backend.');
  }
  const info = adapter.info ?? {};
  const adapterInfo = {
    vendor: String(info.vendor ?? ''),
    architecture: String(info.architecture ?? ''),
    device: String(info.device ?? ''),
    description: String(info.description ?? ''),
  };

  let tfWebGPU: any;  // eslint-disable-line
  try {
    tfWebGPU = await importOptional('@tensorflow/tfjs-backend-webgpu');
  } catch (e) {
    throw new Error(`initNodeWebGPU: cannot import '@tensorflow/tfjs-backend-webgpu': ` +
                    (e as Error).message);
  }
  if (tf.findBackendFactory('webgpu') === null) {
    // Imported before navigator.gpu existed, or removed by releaseNodeWebGPU: register the
    // same factory as the package's base.ts does.
    registerWebGPUFactory(tfWebGPU.WebGPUBackend);
  }
  const ok = await tf.setBackend('webgpu');
  if (!ok || tf.getBackend() !== 'webgpu') {
    throw new Error('initNodeWebGPU: tf.setBackend(\'webgpu\') failed');
  }
  return {backend: 'webgpu', adapterInfo, ...(icdPath !== undefined ? {icdPath} : {})};
}

/** The backend factory of @tensorflow/tfjs-backend-webgpu's base.ts (4.22), re-registered. */
function registerWebGPUFactory(WebGPUBackend: any): void {  // eslint-disable-line
  tf.registerBackend('webgpu', async () => {
    const g = globalThis as any;  // eslint-disable-line
    const adapter = await g.navigator.gpu.requestAdapter({
      powerPreference: tf.env().get('WEBGPU_USE_LOW_POWER_GPU') ? 'low-power' : 'high-performance',
    });
    const requiredFeatures: string[] = [];
    if (adapter.features.has('timestamp-query')) requiredFeatures.push('timestamp-query');
    if (adapter.features.has('bgra8unorm-storage')) requiredFeatures.push('bgra8unorm-storage');
    const limits = adapter.limits;
    const device = await adapter.requestDevice({
      requiredFeatures,
      requiredLimits: {
        maxComputeWorkgroupStorageSize: limits.maxComputeWorkgroupStorageSize,
        maxComputeWorkgroupsPerDimension: limits.maxComputeWorkgroupsPerDimension,
        maxStorageBufferBindingSize: limits.maxStorageBufferBindingSize,
        maxBufferSize: limits.maxBufferSize,
        maxComputeWorkgroupSizeX: limits.maxComputeWorkgroupSizeX,
        maxComputeInvocationsPerWorkgroup: limits.maxComputeInvocationsPerWorkgroup,
      },
    });
    return new WebGPUBackend(device, adapter.info);
  }, 3);
}

/**
 * Drops this module's reference to the WebGPU object so the Node process can exit (Dawn may
 * keep the process alive while it lives). Waits for submitted GPU work, removes the `webgpu`
 * backend from tfjs (switching to `cpu` first if webgpu was active and cpu is registered),
 * then drops `navigator.gpu`. Later webgpu use needs initNodeWebGPU again.
 *
 * Await it: tearing Dawn down in the same task as other pending GPU callbacks, right before
 * the process exits, crashed dawn.node 0.6.2 (abort/segfault at exit) in tests here; the
 * waits around the teardown avoid that.
 */
export async function releaseNodeWebGPU(): Promise<void> {
  const nextTask = () => new Promise<void>((resolve) => setTimeout(resolve, 0));
  const backend = tf.findBackend('webgpu') as
      {device?: {queue?: {onSubmittedWorkDone?: () => Promise<void>}}} | null;
  try {
    await backend?.device?.queue?.onSubmittedWorkDone?.();
  } catch {
    // A lost device: nothing to wait for.
  }
  await nextTask();
  if (backend !== null || tf.findBackendFactory('webgpu') !== null) {
    if (tf.getBackend() === 'webgpu' && tf.findBackendFactory('cpu') !== null) {
      await tf.setBackend('cpu');
    }
    try {
      tf.removeBackend('webgpu');
    } catch {
      // Nothing to remove.
    }
  }
  const g = globalThis as any;  // eslint-disable-line
  if (gpuRef !== null && g.navigator?.gpu === gpuRef) {
    try {
      delete g.navigator.gpu;
    } catch {
      // A non-configurable property: leave it.
    }
    if (g.navigator && Object.keys(g.navigator).length === 0) delete g.navigator;
  }
  gpuRef = null;
  await nextTask();
}
