/**
 * The diffusers/optimum ONNX pipeline folder around a denoiser: given `…/unet/model.onnx` or
 * `…/transformer/model.onnx`, the folder's `model_index.json`, `scheduler/scheduler_config.json`, the
 * denoiser's `config.json` (sample_size, in/out channels, learn_sigma, num_class_embeds) and the first text
 * encoder with its `tokenizer.json`. What is absent is left out; a file that is there but unreadable is an
 * error naming it.
 */
import { existsSync, readFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { ScheduleError } from './schedule-math.js';

/** The folder names diffusers gives a denoiser. */
const DENOISER_FOLDERS = ['unet', 'transformer'] as const;

/** The fields of a denoiser's `config.json` the interface reads (others are kept in `raw`). */
export interface DenoiserConfig {
  file: string;
  sampleSize?: number | [number, number];
  inChannels?: number;
  outChannels?: number;
  learnSigma?: boolean;
  numClassEmbeds?: number;
  /** `cross_attention_dim` (UNet) or `joint_attention_dim` (SD3/Flux): the text states' width. */
  textStatesDim?: number;
  /** `pooled_projection_dim` (SD3/Flux) or `projection_class_embeddings_input_dim` (SDXL, text_embeds + time ids). */
  pooledDim?: number;
  raw: Record<string, unknown>;
}

/** The scheduler's `scheduler_config.json`. */
export interface SchedulerConfig {
  file: string;
  /** `_class_name`: DDIMScheduler, FlowMatchEulerDiscreteScheduler, … */
  className?: string;
  predictionType?: string;
  raw: Record<string, unknown>;
}

/** A text encoder and its tokenizer. */
export interface TextEncoderFiles {
  model: string;
  tokenizer: string;
}

/** What the pipeline folder around a model holds. */
export interface PipelineFolder {
  /** The folder holding `model_index.json` (or the denoiser folder's parent). */
  root: string;
  /** The denoiser's folder name, when it is one diffusers uses. */
  component?: (typeof DENOISER_FOLDERS)[number];
  modelIndex?: { file: string; className?: string; raw: Record<string, unknown> };
  config?: DenoiserConfig;
  scheduler?: SchedulerConfig;
  textEncoder?: TextEncoderFiles;
}

/** The pipeline folder around `modelPath`; undefined when the model sits in no such layout. */
export function findPipelineFolder(modelPath: string): PipelineFolder | undefined {
  const modelDir = dirname(modelPath);
  const folderName = basename(modelDir);
  const component = (DENOISER_FOLDERS as readonly string[]).includes(folderName) ? (folderName as PipelineFolder['component']) : undefined;
  const root = component ? dirname(modelDir) : modelDir;
  const indexFile = join(root, 'model_index.json');
  const configFile = join(modelDir, 'config.json');
  if (!component && !existsSync(indexFile)) return undefined;
  const folder: PipelineFolder = { root, ...(component ? { component } : {}) };
  if (existsSync(indexFile)) {
    const raw = readJsonObject(indexFile);
    folder.modelIndex = { file: indexFile, ...optionalString('className', raw._class_name), raw };
  }
  if (existsSync(configFile)) folder.config = denoiserConfig(configFile);
  const schedulerFile = join(root, 'scheduler', 'scheduler_config.json');
  if (existsSync(schedulerFile)) {
    const raw = readJsonObject(schedulerFile);
    folder.scheduler = { file: schedulerFile, ...optionalString('className', raw._class_name), ...optionalString('predictionType', raw.prediction_type), raw };
  }
  const encoder = join(root, 'text_encoder', 'model.onnx');
  const tokenizer = join(root, 'tokenizer', 'tokenizer.json');
  if (existsSync(encoder) && existsSync(tokenizer)) folder.textEncoder = { model: encoder, tokenizer };
  return folder;
}

function denoiserConfig(file: string): DenoiserConfig {
  const raw = readJsonObject(file);
  const int = (field: string): number | undefined => {
    const v = raw[field];
    if (v === undefined || v === null) return undefined;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 1) throw new ScheduleError(`'${field}' must be a positive integer, got ${JSON.stringify(v)}`, file, field);
    return v;
  };
  const config: DenoiserConfig = { file, raw };
  const size = raw.sample_size;
  if (Array.isArray(size) && size.length === 2 && size.every((d) => Number.isInteger(d) && d > 0)) config.sampleSize = [size[0] as number, size[1] as number];
  else if (size !== undefined && size !== null) config.sampleSize = int('sample_size');
  const set = <K extends keyof DenoiserConfig>(key: K, value: DenoiserConfig[K] | undefined) => {
    if (value !== undefined) config[key] = value;
  };
  set('inChannels', int('in_channels'));
  set('outChannels', int('out_channels'));
  set('numClassEmbeds', int('num_class_embeds'));
  set('textStatesDim', int('cross_attention_dim') ?? int('joint_attention_dim'));
  set('pooledDim', int('pooled_projection_dim') ?? int('projection_class_embeddings_input_dim'));
  if (typeof raw.learn_sigma === 'boolean') config.learnSigma = raw.learn_sigma;
  return config;
}

function optionalString<K extends string>(key: K, value: unknown): { [P in K]?: string } {
  return (typeof value === 'string' ? { [key]: value } : {}) as { [P in K]?: string };
}

/** A JSON object from `file`; unreadable, not JSON or not an object is a ScheduleError naming the file. */
export function readJsonObject(file: string): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(readFileSync(file, 'utf8'));
  } catch (error) {
    throw new ScheduleError(`cannot read it as JSON: ${(error as Error).message}`, file);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new ScheduleError('must be a JSON object', file);
  return value as Record<string, unknown>;
}
