/**
 * The tokenizer of a Hugging Face checkpoint: tokenizer.json read by @huggingface/tokenizers (the
 * pure-JS port of HF tokenizers that transformers.js uses), tokenizer_config.json's chat template
 * rendered by @huggingface/jinja. Behaves as HF transformers' fast tokenizers do.
 */
import {Template} from '@huggingface/jinja';
import {Tokenizer} from '@huggingface/tokenizers';
import type {ChatMessage, LMTokenizer} from './types.js';

type JsonObject = Record<string, unknown>;

/**
 * What this module uses of the package's Tokenizer. (Typed here because the package's .d.ts files
 * import each other without file extensions, which NodeNext resolution (the build's) cannot follow:
 * there `Tokenizer` is `any`. Under bundler resolution (the tests') the real class is checked
 * against this.)
 */
interface TokenizersJs {
  encode(text: string, options: {add_special_tokens: boolean}): {ids: number[], tokens: string[]};
  decode(ids: number[], options: {skip_special_tokens: boolean}): string;
  token_to_id(token: string): number|undefined;
}

function isObject(value: unknown): value is JsonObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

function kindOf(value: unknown): string {
  return value === null ? 'null' : Array.isArray(value) ? 'an array' : typeof value;
}

/** A special token as tokenizer_config.json spells it: "<s>" or {"content": "<s>", …}. */
function tokenContent(value: unknown): string|null {
  if (typeof value === 'string') return value;
  if (isObject(value) && typeof value.content === 'string') return value.content;
  return null;
}

/** The special tokens a chat template may name (transformers' SPECIAL_TOKENS_ATTRIBUTES). */
const SPECIAL_TOKEN_NAMES = ['bos_token', 'eos_token', 'unk_token', 'sep_token', 'pad_token', 'cls_token', 'mask_token'];

/**
 * tokenizer_config.json's `chat_template`: a string, or a list of {name, template} of which HF
 * uses the one named 'default'. Returns the template, or why there is none.
 */
function chatTemplateOf(config: JsonObject): {template: string}|{missing: string} {
  const value = config.chat_template;
  if (typeof value === 'string') return {template: value};
  if (Array.isArray(value)) {
    const named = value.filter(isObject);
    const found = named.find(t => t.name === 'default' && typeof t.template === 'string');
    if (found !== undefined) return {template: found.template as string};
    return {missing: `the checkpoint's tokenizer_config.json has no 'default' chat_template (it has: ` +
                     `${named.map(t => String(t.name)).join(', ') || 'none'})`};
  }
  return {missing: "the checkpoint's tokenizer_config.json has no chat_template"};
}

/** Throws unless `messages` is an array of {role: string, content: string}. */
function checkMessages(messages: unknown): asserts messages is ChatMessage[] {
  if (!Array.isArray(messages)) {
    throw new Error(`applyChatTemplate: messages must be an array of {role, content} (strings), got ${kindOf(messages)}`);
  }
  messages.forEach((message: unknown, i) => {
    if (!isObject(message)) {
      throw new Error(`applyChatTemplate: messages[${i}] must be a {role, content} object, got ${kindOf(message)}`);
    }
    for (const field of ['role', 'content']) {
      if (typeof message[field] !== 'string') {
        throw new Error(`applyChatTemplate: messages[${i}].${field} must be a string, got ${kindOf(message[field])}`);
      }
    }
  });
}

class HFTokenizer implements LMTokenizer {
  readonly hasChatTemplate: boolean;
  readonly bosTokenId: number|null;
  readonly eosTokenId: number|null;
  private readonly chatTemplate: {template: string}|{missing: string};
  private compiledTemplate: Template|null = null;
  /** bos_token, eos_token, … as strings, for the chat template. */
  private readonly specialTokens: Record<string, string> = {};

  constructor(private readonly tokenizer: TokenizersJs, config: JsonObject) {
    for (const name of SPECIAL_TOKEN_NAMES) {
      const content = tokenContent(config[name]);
      if (content !== null) this.specialTokens[name] = content;
    }
    const idOf = (name: string) => {
      const content = this.specialTokens[name];
      return content === undefined ? null : tokenizer.token_to_id(content) ?? null;
    };
    this.bosTokenId = idOf('bos_token');
    this.eosTokenId = idOf('eos_token');
    this.chatTemplate = chatTemplateOf(config);
    this.hasChatTemplate = 'template' in this.chatTemplate;
  }

  encode(text: string, {addSpecialTokens = true}: {addSpecialTokens?: boolean} = {}): number[] {
    if (typeof text !== 'string') throw new Error(`encode: text must be a string, got ${kindOf(text)}`);
    const {ids, tokens} = this.tokenizer.encode(text, {add_special_tokens: addSpecialTokens});
    // A token the vocabulary lacks (e.g. a post-processor's special token) has no id: say which.
    const bad = ids.findIndex(id => !Number.isInteger(id));
    if (bad >= 0) throw new Error(`encode: token ${JSON.stringify(tokens[bad])} is not in tokenizer.json's vocabulary`);
    return ids;
  }

  decode(ids: number[], {skipSpecialTokens = false}: {skipSpecialTokens?: boolean} = {}): string {
    if (!Array.isArray(ids) || !ids.every(id => Number.isInteger(id))) {
      throw new Error('decode: ids must be an array of integer token ids');
    }
    // The package throws on an empty array; HF returns ''.
    if (ids.length === 0) return '';
    return this.tokenizer.decode(ids, {skip_special_tokens: skipSpecialTokens});
  }

  applyChatTemplate(messages: ChatMessage[], options?: {addGenerationPrompt?: boolean, tokenize?: true}): number[];
  applyChatTemplate(messages: ChatMessage[], options: {addGenerationPrompt?: boolean, tokenize: false}): string;
  applyChatTemplate(messages: ChatMessage[],
                    {addGenerationPrompt = true, tokenize = true}: {addGenerationPrompt?: boolean, tokenize?: boolean} = {}):
      number[]|string {
    checkMessages(messages);
    if ('missing' in this.chatTemplate) throw new Error(`applyChatTemplate: ${this.chatTemplate.missing}`);
    if (this.compiledTemplate === null) {
      try {
        this.compiledTemplate = new Template(this.chatTemplate.template);
      } catch (e) {
        throw new Error(`applyChatTemplate: tokenizer_config.json's chat_template does not parse: ${messageOf(e)}`);
      }
    }
    const text = this.compiledTemplate.render({
      ...this.specialTokens,
      messages,
      add_generation_prompt: addGenerationPrompt,
    });
    // The template writes the special tokens (bos, …) itself: HF encodes it without adding them again.
    return tokenize ? this.encode(text, {addSpecialTokens: false}) : text;
  }
}

/**
 * The tokenizer of a checkpoint from its parsed tokenizer.json and tokenizer_config.json (null when
 * the checkpoint has none).
 */
export function createTokenizer(tokenizerJson: unknown, tokenizerConfig: unknown): LMTokenizer {
  if (tokenizerConfig !== null && !isObject(tokenizerConfig)) {
    throw new Error(`tokenizer_config.json must hold a JSON object, got ${kindOf(tokenizerConfig)}`);
  }
  // HF transformers (since 4.45) leaves decoded text as is unless the config asks for the clean-up
  // (" ." → "."); the package would default to it.
  const config: JsonObject = {
    ...tokenizerConfig,
    clean_up_tokenization_spaces: tokenizerConfig?.clean_up_tokenization_spaces === true,
  };
  let tokenizer: TokenizersJs;
  try {
    tokenizer = new Tokenizer(tokenizerJson as object, config);
  } catch (e) {
    throw new Error(`tokenizer.json cannot be read by @huggingface/tokenizers: ${messageOf(e)}`);
  }
  return new HFTokenizer(tokenizer, config);
}
