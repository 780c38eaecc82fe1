// A microphone for Firefox that plays a speech fixture, installed as a WebDriver BiDi preload
// script (it runs in every document of the page before the page's own scripts).
//
// Why: Firefox's fake device (media.navigator.streams.fake) plays a tone, never a file. So
// navigator.mediaDevices.getUserMedia is replaced, for this page only, by one that returns the
// stream of a MediaStreamAudioDestinationNode fed by the fixture. Everything downstream is the
// page's own code: its AudioContext, its capture AudioWorklet (which resamples the context's
// rate to 24 kHz), its WebSocket.
//
// This file is one function expression; the test calls it with
// {pcm16Base64: <mono PCM16 little-endian>, sampleRateHz: <its rate>}.
// What the page asked for is readable on window.fakeMicrophone (copies, read-only).
(config) => {
  // Insecure documents (the initial about:blank) have no navigator.mediaDevices: nothing to replace.
  if (!navigator.mediaDevices) return;
  /** Every constraints object the page passed, as JSON-compatible copies, in order. */
  const requests = [];
  /** One entry per stream handed out: when it started (fixture clock) and whether it was stopped. */
  const opened = [];
  let samples = null;
  let context = null;

  function fixtureSamples() {
    if (samples === null) {
      const binary = atob(config.pcm16Base64);
      const bytes = new Uint8Array(binary.length);
      for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
      const pcm = new Int16Array(bytes.buffer, 0, bytes.length >> 1);
      samples = new Float32Array(pcm.length);
      for (let i = 0; i < pcm.length; i++) samples[i] = pcm[i] / 32768;
    }
    return samples;
  }

  async function getUserMedia(constraints) {
    requests.push(JSON.parse(JSON.stringify(constraints ?? null)));
    if (!constraints || !constraints.audio || constraints.video) {
      throw new DOMException("the test microphone has audio only", "NotFoundError");
    }
    // A context of the default rate, like the page's: Firefox connects a stream only to a
    // context of the same rate.
    context ??= new AudioContext();
    if (context.state !== "running") await context.resume();
    const data = fixtureSamples();
    const buffer = new AudioBuffer({ length: data.length, numberOfChannels: 1, sampleRate: config.sampleRateHz });
    buffer.copyToChannel(data, 0);
    const source = new AudioBufferSourceNode(context, { buffer });
    const destination = new MediaStreamAudioDestinationNode(context, { channelCount: 1 });
    source.connect(destination);
    const entry = { startedAt: context.currentTime, stopped: false, rateHz: context.sampleRate };
    opened.push(entry);
    source.start();
    const [track] = destination.stream.getAudioTracks();
    const stopTrack = track.stop.bind(track);
    // Closing the microphone silences the fixture too, as unplugging a real one would.
    track.stop = () => {
      entry.stopped = true;
      source.stop();
      source.disconnect();
      stopTrack();
    };
    return destination.stream;
  }

  Object.defineProperty(navigator.mediaDevices, "getUserMedia", {
    value: getUserMedia,
    writable: false,
    configurable: true,
  });
  Object.defineProperty(window, "fakeMicrophone", {
    value: Object.freeze({
      get requests() {
        return JSON.parse(JSON.stringify(requests));
      },
      get opened() {
        return opened.map((entry) => ({ ...entry }));
      },
      get contextTime() {
        return context ? context.currentTime : null;
      },
    }),
  });
};
