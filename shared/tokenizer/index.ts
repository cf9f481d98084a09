/** Tokenizers: llama2.c `tokenizer.bin`, Hugging Face `tokenizer.json`, and converters between them. */

export type {
  ChatMessage,
  ChatTemplateOptions,
  EncodeOptions,
  HfTokenizerFiles,
  Tokenizer,
} from './types.js';
export {
  LLAMA2C_BOS_ID,
  LLAMA2C_BYTE_OFFSET,
  LLAMA2C_EOS_ID,
  LLAMA2C_UNK_ID,
  createLlama2cTokenizer,
  parseLlama2cTokenizer,
  type Llama2cTokenizerData,
} from './llama2c-tokenizer.js';
export { createHfTokenizer, type HfTokenizerOptions } from './hf-tokenizer.js';
export { llama2cTokenizerToHf } from './convert-llama2c.js';
export { SYNTH_CHAT_TEMPLATE, SYNTH_MIN_VOCAB_SIZE, createSynthTokenizerJson } from './synth-tokenizer.js';
export { createDecodeStream, type DecodeStream } from './decode-stream.js';
