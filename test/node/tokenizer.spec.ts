import {createTokenizer} from '../../src/models/tokenizer.js';
import type {ChatMessage, LMTokenizer} from '../../src/models/types.js';
import tokenizerJson from '../fixtures/tokenizer/tokenizer.json';
import tokenizerConfig from '../fixtures/tokenizer/tokenizer_config.json';

// createTokenizer on the hand-written Llama-3-style tokenizer of test/fixtures/tokenizer (see its
// README for the id layout). The ids below are worked out from that table and the merges' ranks:
// a printable ASCII char c is c − 33, Ġ (space) 220, Ċ (\n) 198, merge r is 256 + r, the special
// tokens <|begin_of_text|> 289, <|end_of_text|> 290, <|start_header_id|> 291, <|end_header_id|> 292,
// <|eot_id|> 293.

const BOS = 289, EOT = 293, START_HEADER = 291, END_HEADER = 292;

/** A deep copy of a fixture, to change. */
function copy<T>(value: T): T {
  return JSON.parse(JSON.stringify(value)) as T;
}

function fixtureTokenizer(config: unknown = tokenizerConfig): LMTokenizer {
  return createTokenizer(tokenizerJson, config);
}

const MESSAGES: ChatMessage[] = [{role: 'system', content: 'Be brief.'}, {role: 'user', content: 'Hello world'}];
const CHAT_TEXT = '<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>' +
                  '<|start_header_id|>user<|end_header_id|>\n\nHello world<|eot_id|>';
const GENERATION_PROMPT = '<|start_header_id|>assistant<|end_header_id|>\n\n';
const CHAT_IDS = [
  BOS, START_HEADER, 280 /* system */, END_HEADER, 268 /* ĊĊ */,
  33, 68 /* B e */, 220, 65, 81, 72, 68, 69 /* Ġ b r i e f */, 13 /* . */, EOT,
  START_HEADER, 275 /* user */, END_HEADER, 268, 261 /* Hello */, 264 /* Ġworld */, EOT,
];
const GENERATION_PROMPT_IDS = [START_HEADER, 288 /* assistant */, END_HEADER, 268];

describe('createTokenizer', () => {
  describe('encode', () => {
    it('adds <|begin_of_text|> as the post-processor says, unless addSpecialTokens is false', () => {
      const tok = fixtureTokenizer();
      expect(tok.encode('Hello world')).toEqual([BOS, 261, 264]);
      expect(tok.encode('Hello world', {addSpecialTokens: true})).toEqual([BOS, 261, 264]);
      expect(tok.encode('Hello world', {addSpecialTokens: false})).toEqual([261, 264]);
      expect(tok.encode('')).toEqual([BOS]);
      expect(tok.encode('', {addSpecialTokens: false})).toEqual([]);
    });

    it('merges by rank (ids worked out by hand from the merges)', () => {
      const tok = fixtureTokenizer();
      const ids = (text: string) => tok.encode(text, {addSpecialTokens: false});
      // h e l l o: "l l" (rank 2) before "h e" (10), then "e ll" (3) takes the e: h ell o.
      expect(ids('hello')).toEqual([71, 259, 78]);
      // Ġ w o r l d s: Ġw, or, Ġwor, Ġworl, Ġworld; no merge takes the s.
      expect(ids(' worlds')).toEqual([264, 82]);
      // "the" has no "t he" merge: t he. " theme": Ġt (9), he (10), Ġthe (11), then m e.
      expect(ids('the theme')).toEqual([83, 266, 267, 76, 68]);
      // Llama-3's regex splits digits in runs of at most 3: "123" "45".
      expect(ids('12345')).toEqual([270, 19, 20]);
      // Contractions are pre-tokens of their own, in either case: I 'm, I ' M.
      expect(ids("I'm")).toEqual([40, 271]);
      expect(ids("I'M")).toEqual([40, 6, 44]);
      expect(ids('a\n\nb')).toEqual([64, 268, 65]);
    });

    it('is byte-level: UTF-8 bytes of characters outside the merges', () => {
      const tok = fixtureTokenizer();
      // é = C3 A9 → Ã© (merge 16, 272); € = E2 82 AC → â (158) Ĥ (224) ¬ (105).
      expect(tok.encode('é€', {addSpecialTokens: false})).toEqual([272, 158, 224, 105]);
    });

    it('reads special tokens written in the text as themselves', () => {
      const tok = fixtureTokenizer();
      expect(tok.encode('<|start_header_id|>user<|end_header_id|>', {addSpecialTokens: false}))
          .toEqual([START_HEADER, 275, END_HEADER]);
      expect(tok.encode('Hello<|eot_id|> world')).toEqual([BOS, 261, EOT, 264]);
    });
  });

  describe('decode', () => {
    it('round-trips what encode makes', () => {
      const tok = fixtureTokenizer();
      for (const text of ['Hello world', 'hello', 'the theme', '12345', "I'M", 'a\n\nb', 'é€', '  two  spaces\t',
                          'Hello<|eot_id|> world']) {
        expect(tok.decode(tok.encode(text, {addSpecialTokens: false}))).toBe(text);
      }
      expect(tok.decode([])).toBe('');
    });

    it('keeps special tokens, or drops them with skipSpecialTokens', () => {
      const tok = fixtureTokenizer();
      const ids = tok.encode('Hello<|eot_id|> world');
      expect(tok.decode(ids)).toBe('<|begin_of_text|>Hello<|eot_id|> world');
      expect(tok.decode(ids, {skipSpecialTokens: false})).toBe('<|begin_of_text|>Hello<|eot_id|> world');
      expect(tok.decode(ids, {skipSpecialTokens: true})).toBe('Hello world');
    });

    it('decodes bytes, not tokens: an incomplete UTF-8 sequence is U+FFFD', () => {
      const tok = fixtureTokenizer();
      expect(tok.decode([158, 224, 105])).toBe('€');
      expect(tok.decode([158])).toBe('\uFFFD');
    });

    it("cleans up spaces before punctuation only when tokenizer_config.json asks (HF's default: no)", () => {
      const ids = [261, 264, 220, 0];  // Hello Ġworld Ġ !
      expect(fixtureTokenizer().encode('Hello world !', {addSpecialTokens: false})).toEqual(ids);
      expect(fixtureTokenizer().decode(ids)).toBe('Hello world!');  // the fixture says true
      expect(fixtureTokenizer(null).decode(ids)).toBe('Hello world !');
      expect(fixtureTokenizer({...copy(tokenizerConfig), clean_up_tokenization_spaces: false}).decode(ids))
          .toBe('Hello world !');
    });
  });

  describe('special token ids', () => {
    it('bos and eos from tokenizer_config.json, as strings or {content}', () => {
      const tok = fixtureTokenizer();
      expect([tok.bosTokenId, tok.eosTokenId]).toEqual([BOS, EOT]);
      const objects = fixtureTokenizer({
        ...copy(tokenizerConfig),
        bos_token: {__type: 'AddedToken', content: '<|begin_of_text|>', lstrip: false, normalized: false, rstrip: false,
                    single_word: false},
        eos_token: {content: '<|end_of_text|>'},
      });
      expect([objects.bosTokenId, objects.eosTokenId]).toEqual([BOS, 290]);
    });

    it('null without tokenizer_config.json, or for a token the vocabulary lacks', () => {
      const bare = fixtureTokenizer(null);
      expect([bare.bosTokenId, bare.eosTokenId, bare.hasChatTemplate]).toEqual([null, null, false]);
      // tokenizer.json's post-processor still adds bos.
      expect(bare.encode('Hello world')).toEqual([BOS, 261, 264]);
      const missing = fixtureTokenizer({...copy(tokenizerConfig), eos_token: '</s>'});
      expect([missing.bosTokenId, missing.eosTokenId]).toEqual([BOS, null]);
    });
  });

  describe('applyChatTemplate', () => {
    it("renders Llama-3's template and encodes it without a second bos", () => {
      const tok = fixtureTokenizer();
      expect(tok.hasChatTemplate).toBe(true);
      expect(tok.applyChatTemplate(MESSAGES, {tokenize: false})).toBe(CHAT_TEXT + GENERATION_PROMPT);
      expect(tok.applyChatTemplate(MESSAGES)).toEqual([...CHAT_IDS, ...GENERATION_PROMPT_IDS]);
      expect(tok.applyChatTemplate(MESSAGES, {addGenerationPrompt: true, tokenize: true}))
          .toEqual([...CHAT_IDS, ...GENERATION_PROMPT_IDS]);
      expect(tok.applyChatTemplate(MESSAGES, {addGenerationPrompt: false, tokenize: false})).toBe(CHAT_TEXT);
      expect(tok.applyChatTemplate(MESSAGES, {addGenerationPrompt: false})).toEqual(CHAT_IDS);
      expect(tok.decode(tok.applyChatTemplate(MESSAGES))).toBe(CHAT_TEXT + GENERATION_PROMPT);
    });

    it('passes bos_token as a string when tokenizer_config.json spells it {content}', () => {
      const tok = fixtureTokenizer({...copy(tokenizerConfig), bos_token: {content: '<|begin_of_text|>'}});
      expect(tok.applyChatTemplate(MESSAGES, {tokenize: false})).toBe(CHAT_TEXT + GENERATION_PROMPT);
    });

    it("uses the template named 'default' of the list form", () => {
      const config = copy(tokenizerConfig);
      const tok = fixtureTokenizer({
        ...config,
        chat_template: [{name: 'tool_use', template: 'TOOLS'}, {name: 'default', template: config.chat_template}],
      });
      expect(tok.hasChatTemplate).toBe(true);
      expect(tok.applyChatTemplate(MESSAGES)).toEqual([...CHAT_IDS, ...GENERATION_PROMPT_IDS]);
    });

    it('hands the template every message as given, and an empty conversation', () => {
      const tok = fixtureTokenizer({
        ...copy(tokenizerConfig),
        chat_template: '{{ eos_token }}{% for m in messages %}[{{ m.role }}|{{ m.content }}]{% endfor %}' +
                       '{% if add_generation_prompt %}>{% endif %}',
      });
      expect(tok.applyChatTemplate([{role: 'tool', content: ' x '}], {tokenize: false})).toBe('<|eot_id|>[tool| x ]>');
      expect(tok.applyChatTemplate([], {tokenize: false, addGenerationPrompt: false})).toBe('<|eot_id|>');
      expect(tok.applyChatTemplate([])).toEqual([EOT, 29 /* > (62 − 33) */]);
    });
  });

  describe('errors', () => {
    it("a tokenizer.json the package cannot read: names tokenizer.json and the package's reason", () => {
      const json = copy(tokenizerJson);
      expect(() => createTokenizer(null, tokenizerConfig))
          .toThrowError(/^tokenizer\.json cannot be read by @huggingface\/tokenizers: .*must be a valid object/);
      expect(() => createTokenizer(JSON.stringify(json), tokenizerConfig))
          .toThrowError(/^tokenizer\.json .*must be a valid object/);
      const {model: _, ...noModel} = json;
      expect(() => createTokenizer(noModel, tokenizerConfig)).toThrowError(/^tokenizer\.json .*"model"/);
      expect(() => createTokenizer({...json, pre_tokenizer: {type: 'Nope'}}, tokenizerConfig))
          .toThrowError(/^tokenizer\.json .*Unknown PreTokenizer type: Nope/);
    });

    it('a tokenizer_config.json that is not an object', () => {
      expect(() => createTokenizer(tokenizerJson, [])).toThrowError(/tokenizer_config\.json must hold a JSON object, got an array/);
      expect(() => createTokenizer(tokenizerJson, 'x')).toThrowError(/tokenizer_config\.json must hold a JSON object, got string/);
    });

    it('a special token the vocabulary lacks, added by the post-processor', () => {
      const json = copy(tokenizerJson);
      json.post_processor.processors[1]!.single![0]!.SpecialToken!.id = '<s>';
      const tok = createTokenizer(json, tokenizerConfig);
      expect(() => tok.encode('Hello')).toThrowError(/encode: token "<s>" is not in tokenizer\.json's vocabulary/);
      expect(tok.encode('Hello', {addSpecialTokens: false})).toEqual([261]);
    });

    it('applyChatTemplate without a chat template', () => {
      for (const config of [null, {...copy(tokenizerConfig), chat_template: undefined}, {bos_token: '<|begin_of_text|>'}]) {
        const tok = fixtureTokenizer(config);
        expect(tok.hasChatTemplate).toBe(false);
        expect(() => tok.applyChatTemplate(MESSAGES))
            .toThrowError("applyChatTemplate: the checkpoint's tokenizer_config.json has no chat_template");
      }
      const noDefault = fixtureTokenizer({...copy(tokenizerConfig), chat_template: [{name: 'tool_use', template: 'T'}]});
      expect(noDefault.hasChatTemplate).toBe(false);
      expect(() => noDefault.applyChatTemplate(MESSAGES, {tokenize: false}))
          .toThrowError(/tokenizer_config\.json has no 'default' chat_template \(it has: tool_use\)/);
    });

    it('a chat template that does not parse, or raises', () => {
      const broken = fixtureTokenizer({...copy(tokenizerConfig), chat_template: '{% if %}'});
      expect(broken.hasChatTemplate).toBe(true);
      expect(() => broken.applyChatTemplate(MESSAGES)).toThrowError(/chat_template does not parse/);
      const raising = fixtureTokenizer({...copy(tokenizerConfig), chat_template: "{{ raise_exception('Roles must alternate') }}"});
      expect(() => raising.applyChatTemplate(MESSAGES)).toThrowError(/Roles must alternate/);
    });

    it('messages that are not an array of {role, content} strings: names the argument', () => {
      const tok = fixtureTokenizer();
      const bad = (messages: unknown) => () => tok.applyChatTemplate(messages as ChatMessage[]);
      expect(bad('Hello')).toThrowError(/applyChatTemplate: messages must be an array of \{role, content\} \(strings\), got string/);
      expect(bad({role: 'user', content: 'x'})).toThrowError(/messages must be an array .*got object/);
      expect(bad([MESSAGES[0], null])).toThrowError(/applyChatTemplate: messages\[1\] must be a \{role, content\} object, got null/);
      expect(bad([{role: 'user'}])).toThrowError(/applyChatTemplate: messages\[0\]\.content must be a string, got undefined/);
      expect(bad([{role: 1, content: 'x'}])).toThrowError(/applyChatTemplate: messages\[0\]\.role must be a string, got number/);
      expect(bad([{role: 'user', content: ['x']}])).toThrowError(/messages\[0\]\.content must be a string, got an array/);
    });

    it('encode of a non-string, decode of non-integer ids', () => {
      const tok = fixtureTokenizer();
      expect(() => tok.encode(42 as unknown as string)).toThrowError(/encode: text must be a string, got number/);
      expect(() => tok.decode([1.5])).toThrowError(/decode: ids must be an array of integer token ids/);
      expect(() => tok.decode('1' as unknown as number[])).toThrowError(/decode: ids must be an array/);
    });
  });
});
