/**
 * The tokenizer contract used by the generation loop, the UI and the CLI tools. Every concrete
 * tokenizer (llama2.c `tokenizer.bin`, Hugging Face `tokenizer.json`) implements {@link Tokenizer}.
 */

/** Options for {@link Tokenizer.encode}. */
export interface EncodeOptions {
  /** Put the BOS token in front (ignored when the tokenizer has no BOS, i.e. `bosId < 0`). Default false. */
  bos?: boolean;
  /** Put the first EOS token at the end (ignored when `eosIds` is empty). Default false. */
  eos?: boolean;
}

/** One chat turn handed to {@link Tokenizer.applyChatTemplate}. */
export interface ChatMessage {
  role: string;
  content: string;
}

/** Options for {@link Tokenizer.applyChatTemplate}. */
export interface ChatTemplateOptions {
  /** Append the prompt that opens the assistant's turn. Default false. */
  addGenerationPrompt?: boolean;
}

/** Text to ids and back, plus the streaming form of decoding. */
export interface Tokenizer {
  /** Number of token ids (largest id + 1); matches the model's embedding rows. */
  readonly vocabSize: number;
  /** Beginning-of-sequence id, or -1 when the tokenizer has none. */
  readonly bosId: number;
  /** Ids that end generation (may be empty). */
  readonly eosIds: number[];
  /** Encodes `text` to token ids, optionally wrapped in BOS / EOS. */
  encode(text: string, opts?: EncodeOptions): number[];
  /**
   * The text to print for `token` when it directly follows `prev` in a stream (pass -1 as `prev`
   * for the very first token). Concatenating the pieces of a sequence gives its printed text.
   */
  decodePiece(prev: number, token: number): string;
  /** Decodes a whole id sequence to text (control tokens such as BOS/EOS produce no text). */
  decode(ids: number[]): string;
  /** Renders a chat with the model's chat template; absent when the model has none. */
  applyChatTemplate?(messages: ChatMessage[], opts?: ChatTemplateOptions): string;
}

/** A Hugging Face tokenizer as files: the parsed `tokenizer.json` and `tokenizer_config.json`. */
export interface HfTokenizerFiles {
  tokenizerJson: object;
  tokenizerConfig: object;
}
