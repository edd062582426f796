import {checkInteger} from '../ops/check.js';

/** A device = a registered tfjs backend: 'cpu' for CPU, 'webgpu' for GPU. */
export class DeviceRef {
  readonly deviceType: 'cpu'|'gpu';
  readonly id: number;

  constructor(deviceType: 'cpu'|'gpu', id = 0) {
    if (deviceType !== 'cpu' && deviceType !== 'gpu') {
      throw new Error(`DeviceRef deviceType: expected 'cpu' or 'gpu', got '${deviceType}'`);
    }
    checkInteger('DeviceRef id', id, 0);
    this.deviceType = deviceType;
    this.id = id;
  }

  static CPU(id = 0): DeviceRef {
    return new DeviceRef('cpu', id);
  }

  static GPU(id = 0): DeviceRef {
    return new DeviceRef('gpu', id);
  }

  /** The tfjs backend that runs this device's work. */
  get backendName(): 'cpu'|'webgpu' {
    return this.deviceType === 'cpu' ? 'cpu' : 'webgpu';
  }

  toString(): string {
    return `${this.deviceType}:${this.id}`;
  }
}

/**
 * How `shard` splits a layer over devices: tensor parallel (contiguous head blocks, outputs
 * summed) or replicate (data parallel: a full copy per device).
 */
export class ShardingStrategy {
  readonly kind: 'tensorParallel'|'replicate';
  readonly numDevices: number;

  private constructor(kind: 'tensorParallel'|'replicate', numDevices: number) {
    checkInteger(`ShardingStrategy.${kind} numDevices`, numDevices, 1);
    this.kind = kind;
    this.numDevices = numDevices;
  }

  static tensorParallel(numDevices: number): ShardingStrategy {
    return new ShardingStrategy('tensorParallel', numDevices);
  }

  static replicate(numDevices: number): ShardingStrategy {
    return new ShardingStrategy('replicate', numDevices);
  }

  get isTensorParallel(): boolean {
    return this.kind === 'tensorParallel';
  }

  get isReplicate(): boolean {
    return this.kind === 'replicate';
  }
}
