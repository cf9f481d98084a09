/**
 * `npm run convert -- --model <file.bin> [--tokenizer <tok.bin>] --out <dir>`
 * Converts a llama2.c checkpoint to a Hugging Face directory (config.json, model.safetensors,
 * tokenizer.json) so every model goes through the same safetensors loader.
 */
import { readFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { isLlama2cLocation, splitLocation } from '../../shared/model/open-model.js';
import { parseLlama2cTokenizer } from '../../shared/tokenizer/llama2c-tokenizer.js';
import { convertToHf } from '../model/convert.js';
import { openNodeModel } from '../../signaling-server/src/model/open-node-model.js';
import { runCli, usage } from './cli-util.js';

runCli(async () => {
  const { values } = parseArgs({
    options: { model: { type: 'string' }, tokenizer: { type: 'string' }, out: { type: 'string' } },
  });
  if (!values.model || !values.out)
    throw usage('npm run convert -- --model <file.bin> [--tokenizer <tok.bin>] --out <dir>');
  if (!isLlama2cLocation(values.model)) throw usage('--model must be a llama2.c .bin checkpoint.');
  const opened = await openNodeModel({ url: values.model, tokenizerUrl: values.tokenizer });
  const tokPath =
    values.tokenizer ?? `${splitLocation(values.model).root}tok${opened.source.config.vocabSize}.bin`;
  let tok;
  try {
    tok = parseLlama2cTokenizer(
      new Uint8Array(await readFile(tokPath)),
      opened.source.config.vocabSize,
      tokPath,
    );
  } catch (e) {
    if (values.tokenizer) throw e;
    process.stderr.write(`note: no tokenizer at ${tokPath}; writing weights and config only.\n`);
  }
  const { files } = await convertToHf(opened.source, tok, values.out);
  process.stdout.write(`wrote ${files.map((f) => `${values.out}/${f}`).join(', ')}\n`);
});
