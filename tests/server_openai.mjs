// The server through the official `openai` npm client (run by
// tests/test_server.sh from a folder where `openai` is installed):
//   node server_openai.mjs BASE_URL API_KEY EXPECTED_TEXT
// Greedy completions (plain and streamed) must equal EXPECTED_TEXT, the
// library's output for "The robot" with 90 tokens; chat works with a
// template override; auth and request errors arrive as the client's typed
// errors. Prints "ok: ..." / "FAILED: ..." lines; exits non-zero on failure.
import OpenAI from 'openai';

const [base, key, want] = process.argv.slice(2);
// No retries: a 429 or 5xx must show, not be hidden by the client.
const client = new OpenAI({ baseURL: base + '/v1', apiKey: key, maxRetries: 0, timeout: 30000 });
let failed = 0;
const ok = (m) => console.log('ok: openai npm: ' + m);
const bad = (m) => { console.log('FAILED: openai npm: ' + m); failed++; };
const check = (got, exp, m) => (got === exp ? ok(m) : bad(`${m}: got ${JSON.stringify(got)}, expected ${JSON.stringify(exp)}`));

async function step(name, fn) {
  try { await fn(); } catch (e) { bad(`${name}: ${e}`); }
}

await step('models', async () => {
  const list = await client.models.list();
  check(list.data.length, 1, 'models.list has one model');
});

await step('completion', async () => {
  const r = await client.completions.create({ model: 'x', prompt: 'The robot', max_tokens: 90, temperature: 0 });
  check(r.choices[0].text, want, 'completions.create equals the library output');
  check(r.usage.completion_tokens, 90, 'usage.completion_tokens');
});

await step('completion stream', async () => {
  const s = await client.completions.create({ model: 'x', prompt: 'The robot', max_tokens: 90, temperature: 0, stream: true });
  let text = '', n = 0, finish = null;
  for await (const c of s) { text += c.choices[0].text; n++; if (c.choices[0].finish_reason) finish = c.choices[0].finish_reason; }
  check(text, want, `streamed completion (${n} chunks) equals the library output`);
  check(finish, 'length', 'streamed finish_reason');
});

await step('chat', async () => {
  const r = await client.chat.completions.create({
    model: 'x', messages: [{ role: 'user', content: 'hello' }], max_tokens: 8, temperature: 0, template: 'chatml',
  });
  check(r.choices[0].message.role, 'assistant', 'chat.completions.create');
  const s = await client.chat.completions.create({
    model: 'x', messages: [{ role: 'user', content: 'hello' }], max_tokens: 8, temperature: 0, template: 'chatml', stream: true,
  });
  let text = '';
  for await (const c of s) text += c.choices[0]?.delta?.content ?? '';
  check(text, r.choices[0].message.content, 'streamed chat equals the non-streamed reply');
});

await step('errors', async () => {
  const wrong = new OpenAI({ baseURL: base + '/v1', apiKey: 'sk-wrong', maxRetries: 0 });
  try {
    await wrong.completions.create({ model: 'x', prompt: 'hi', max_tokens: 1 });
    bad('a wrong key was accepted');
  } catch (e) {
    check(e instanceof OpenAI.AuthenticationError && e.status === 401, true, 'a wrong key is an AuthenticationError');
  }
  try {
    await client.chat.completions.create({ model: 'x', messages: [{ role: 'user', content: 'hi' }], max_tokens: 1 });
    bad('chat without a template was accepted');
  } catch (e) {
    check(e instanceof OpenAI.BadRequestError && /chat template/.test(e.message), true,
      'chat without a template is a BadRequestError naming the template');
  }
  try {
    await client.completions.create({ model: 'x', prompt: 'hi', temperature: 9 });
    bad('temperature 9 was accepted');
  } catch (e) {
    check(e instanceof OpenAI.BadRequestError && e.error?.type === 'invalid_request_error', true,
      'a bad sampling value is a BadRequestError');
  }
});

process.exit(failed ? 1 : 0);
