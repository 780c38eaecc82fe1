/**
 * Page-level checks of the UI's AudioWorklets, driven by tests/gateway/test_browser.py.
 *
 * The worklets are loaded from /static/ exactly as the UI loads them. Offline contexts render
 * a known signal faster than real time and deterministically; the flush check needs a running
 * clock, so it uses a real-time context (headless Chromium's clock runs without a sound card).
 * Results go back to Python as plain arrays for numpy to analyse.
 */

const CAPTURE = "/static/capture-worklet.js";
const PLAYBACK = "/static/playback-worklet.js";

/**
 * Oscillator -> capture worklet in an OfflineAudioContext at `rateHz`; returns the 24 kHz PCM16.
 * @param {{rateHz: number, freqHz: number, amplitude: number, seconds: number}} options
 */
async function captureTone({ rateHz, freqHz, amplitude, seconds }) {
  const context = new OfflineAudioContext({ numberOfChannels: 1, length: Math.round(rateHz * seconds), sampleRate: rateHz });
  await context.audioWorklet.addModule(CAPTURE);
  const node = new AudioWorkletNode(context, "realtalk-capture", {
    numberOfInputs: 1,
    numberOfOutputs: 0,
    channelCount: 1,
    channelCountMode: "explicit",
    processorOptions: { chunkMs: 20 },
  });
  /** @type {Int16Array[]} */
  const chunks = [];
  node.port.onmessage = (event) => {
    if (event.data.type === "chunk") chunks.push(new Int16Array(event.data.pcm));
  };
  const oscillator = new OscillatorNode(context, { frequency: freqHz });
  const gain = new GainNode(context, { gain: amplitude });
  oscillator.connect(gain).connect(node);
  oscillator.start();
  await context.startRendering();
  // Messages posted during rendering are delivered as tasks: wait until the expected count arrived.
  const expected = Math.floor((seconds * 24000 - 100) / 480);
  for (let waited = 0; chunks.length < expected && waited < 200; waited++) await new Promise((r) => setTimeout(r, 10));
  const samples = [];
  for (const chunk of chunks) for (const value of chunk) samples.push(value);
  return { samples, chunkSizes: chunks.map((c) => c.length) };
}

/**
 * Round trip in a real-time context: a 24 kHz PCM16 tone, pushed as two items, through the
 * playback worklet (24 kHz -> context rate) into the capture worklet (context rate -> 24 kHz).
 * Offline contexts do not deliver port messages while rendering, so the pushes need a live one.
 * @param {{freqHz: number, amplitude: number, toneSeconds: number}} options
 */
async function playbackTone({ freqHz, amplitude, toneSeconds }) {
  const context = new AudioContext();
  await Promise.all([context.audioWorklet.addModule(PLAYBACK), context.audioWorklet.addModule(CAPTURE)]);
  const player = new AudioWorkletNode(context, "realtalk-playback", { numberOfInputs: 0, numberOfOutputs: 1, outputChannelCount: [1] });
  const recorder = new AudioWorkletNode(context, "realtalk-capture", {
    numberOfInputs: 1,
    numberOfOutputs: 0,
    channelCount: 1,
    channelCountMode: "explicit",
  });
  /** @type {any[]} */
  const reports = [];
  /** @type {number[]} */
  const recorded = [];
  player.port.onmessage = (event) => reports.push({ ...event.data, at: context.currentTime });
  recorder.port.onmessage = (event) => {
    if (event.data.type === "chunk") for (const value of new Int16Array(event.data.pcm)) recorded.push(value);
  };
  player.connect(recorder);
  player.connect(context.destination);
  await context.resume();
  const pcm = new Int16Array(Math.round(24000 * toneSeconds));
  for (let i = 0; i < pcm.length; i++) pcm[i] = Math.round(amplitude * 32767 * Math.sin((2 * Math.PI * freqHz * i) / 24000));
  // Two items back to back, split unevenly, to exercise the per-item accounting.
  const split = Math.floor(pcm.length / 3);
  const first = pcm.slice(0, split);
  const second = pcm.slice(split);
  const startedAt = context.currentTime;
  player.port.postMessage({ type: "push", itemId: "item_a", pcm: first.buffer }, [first.buffer]);
  player.port.postMessage({ type: "push", itemId: "item_b", pcm: second.buffer }, [second.buffer]);
  await new Promise((r) => setTimeout(r, toneSeconds * 1000 + 400));
  await context.close();
  return { recorded, reports, itemA: split, itemB: pcm.length - split, startedAt, rateHz: context.sampleRate };
}

/**
 * Real-time context: queue `seconds` of audio, let it play for `playMs`, flush, and compare the
 * reported count with the context clock.
 * @param {{seconds: number, playMs: number}} options
 */
async function playbackFlush({ seconds, playMs }) {
  const context = new AudioContext();
  await context.audioWorklet.addModule(PLAYBACK);
  const node = new AudioWorkletNode(context, "realtalk-playback", { numberOfInputs: 0, numberOfOutputs: 1, outputChannelCount: [1] });
  node.connect(context.destination);
  /** @type {any[]} */
  const reports = [];
  /** @type {(value: any) => void} */
  let flushed = () => {};
  const flushedPromise = new Promise((resolve) => (flushed = resolve));
  node.port.onmessage = (event) => {
    reports.push(event.data);
    if (event.data.type === "flushed") flushed(event.data);
  };
  await context.resume();
  const pcm = new Int16Array(Math.round(24000 * seconds)).fill(1000);
  const startTime = context.currentTime;
  node.port.postMessage({ type: "push", itemId: "item_long", pcm: pcm.buffer }, [pcm.buffer]);
  await new Promise((r) => setTimeout(r, playMs));
  const flushTime = context.currentTime;
  node.port.postMessage({ type: "flush" });
  const result = await flushedPromise;
  // Audio pushed after the flush belongs to a new item and plays from its start.
  const next = new Int16Array(2400).fill(1000);
  node.port.postMessage({ type: "push", itemId: "item_next", pcm: next.buffer }, [next.buffer]);
  await new Promise((r) => setTimeout(r, 300));
  await context.close();
  return { flushed: result, reports, clockPlayedSamples: Math.round((flushTime - startTime) * 24000), rateHz: context.sampleRate };
}

window.harness = { captureTone, playbackTone, playbackFlush };
window.harnessReady = true;
