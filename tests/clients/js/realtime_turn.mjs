// One text turn through the realtalk gateway with the npm `openai` package, configured for Azure.
// Run by tests/clients/test_npm_openai.py: node realtime_turn.mjs <endpoint> <deployment> <voice>
// with the key in REALTALK_TEST_API_KEY. Prints one JSON line: what the library reported.
import { AzureOpenAI } from 'openai';
import { OpenAIRealtimeWS } from 'openai/realtime/ws';

const [endpoint, deployment, voice] = process.argv.slice(2);
const client = new AzureOpenAI({
  endpoint,
  deployment,
  apiKey: process.env.REALTALK_TEST_API_KEY,
  apiVersion: '2025-08-28',
});
const report = { url: null, events: [], errors: [], audioBytes: 0, transcript: '', closed: null };
const finish = (code) => {
  process.stdout.write(JSON.stringify(report) + '\n');
  process.exit(code);
};
setTimeout(() => {
  report.errors.push('timed out waiting for response.done');
  finish(1);
}, 15000).unref();

const rt = await OpenAIRealtimeWS.azure(client);
report.url = rt.url.toString();
rt.on('error', (err) => report.errors.push(err.error ?? { message: err.message }));
rt.on('event', (event) => {
  report.events.push(
    event.type === 'session.updated' ? { type: event.type, voice: event.session?.audio?.output?.voice } : { type: event.type },
  );
  if (event.type === 'response.output_audio.delta') report.audioBytes += Buffer.from(event.delta, 'base64').length;
  if (event.type === 'response.output_audio_transcript.delta') report.transcript += event.delta;
  if (event.type === 'response.done') {
    report.status = event.response.status;
    rt.close();
  }
});
rt.socket.on('close', (code) => {
  report.closed = code;
  finish(0);
});
rt.socket.on('open', () => {
  rt.send({ type: 'session.update', session: { type: 'realtime', audio: { output: { voice } } } });
  rt.send({
    type: 'conversation.item.create',
    item: { type: 'message', role: 'user', content: [{ type: 'input_text', text: 'Hello there!' }] },
  });
  rt.send({ type: 'response.create' });
});
