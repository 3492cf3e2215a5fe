// llama.cpp's side of the side-by-side benchmark (bench/llamacpp/side_by_side.sh).
//
// Why this exists: the reference figures in the CPU-speed issue were measured
// on a shared VM at another time; its memory bandwidth swings by +-30% from
// hour to hour. A ratio is only meaningful when both engines run on the same
// model, on the same machine, minutes apart. llama.cpp's prebuilt CPU build
// ships in the npm package node-llama-cpp (no compiler, no download at run
// time), so this script drives it with the same settings llms-bench uses:
// a 512-token prompt in one batch, then greedy generation one token at a time.
//
// The figures printed are llama.cpp's own timers (llama_perf_context), read
// from its log, so the JavaScript layer's per-token overhead is not charged
// to llama.cpp.
//
// usage: node bench.mjs MODEL.gguf [PROMPT=512] [GEN=128] [REPS=3] [THREADS=2]
// prints one JSON line: {"prompt_tok_s": best, "gen_tok_s": best, ...}
import {getLlama} from "node-llama-cpp";

const [, , modelPath, promptArg, genArg, repsArg, threadsArg] = process.argv;
const nPrompt = Number(promptArg || 512), nGen = Number(genArg || 128);
const reps = Number(repsArg || 3), threads = Number(threadsArg || 2);

// llama_perf_context_print lines: "prompt eval time = X ms / N tokens" and
// "eval time = X ms / N runs".
let lastPrompt = null, lastGen = null;
const logger = (level, message) => {
  let m = /prompt eval time =\s*([0-9.]+) ms \/\s*(\d+) tokens/.exec(message);
  if (m) { lastPrompt = Number(m[2]) / (Number(m[1]) / 1000); return; }
  m = /\beval time =\s*([0-9.]+) ms \/\s*(\d+) runs/.exec(message);
  if (m) lastGen = Number(m[2]) / (Number(m[1]) / 1000);
};

const llama = await getLlama({gpu: false, build: "never", maxThreads: threads,
                              logLevel: "info", logger});
const model = await llama.loadModel({modelPath, gpuLayers: 0});
const context = await model.createContext({
  contextSize: nPrompt + nGen + 16, batchSize: 512, sequences: 1,
  threads: {ideal: threads, min: threads}, performanceTracking: true});
const seq = context.getSequence();
// Every shape llms-mkmodel writes has at least 32,000 tokens.
const vocab = 32000;

const prompt = [], gen = [];
for (let r = 0; r < reps; r++) {
  await seq.clearHistory();
  // The same kind of prompt as llms-bench: arbitrary ids away from the specials.
  const toks = Array.from({length: nPrompt}, (_, i) => 100 + ((i * 7919 + r) % (vocab - 200)));
  await seq.evaluateWithoutGeneratingNewTokens(toks);
  let n = 0;
  for await (const tok of seq.evaluate([toks[nPrompt - 1]], {temperature: 0})) {
    void tok;
    if (++n >= nGen) break;
  }
  lastPrompt = lastGen = null;
  await context.printTimings();  // goes to the logger above
  if (lastPrompt === null || lastGen === null) throw new Error("no llama.cpp timings in its log");
  prompt.push(lastPrompt); gen.push(lastGen);
}
const best = (a) => Math.max(...a);
console.log(JSON.stringify({engine: "llama.cpp", model: modelPath, threads,
  prompt_tokens: nPrompt, gen_tokens: nGen,
  prompt_tok_s: Number(best(prompt).toFixed(2)), gen_tok_s: Number(best(gen).toFixed(2)),
  prompt_runs: prompt.map((x) => Number(x.toFixed(2))), gen_runs: gen.map((x) => Number(x.toFixed(2)))}));
process.exit(0);
