// rtcbot.js: the browser side of rtcbot, as an ES module.
//
//   import { RTCConnection, Keyboard, Gamepad, connect } from "/rtcbot.js";
//
//   const conn = new RTCConnection();
//   conn.video.subscribe(document.querySelector("video"));    // the robot's camera in a <video>
//   conn.audio.subscribe(document.querySelector("audio"));    // its microphone
//   conn.subscribe((msg) => console.log("robot says", msg));  // messages from Python
//   await connect(conn, "/connect");                           // offer -> POST -> answer
//   conn.put_nowait({ left: 100, right: 100 });               // dicts as JSON, strings as text
//
//   const keys = new Keyboard();
//   keys.subscribe((ev) => conn.put_nowait(ev));               // {type: "keydown", key: "w", code: "KeyW"}
//
// Messages follow rtcbot.web.messages: strings as text, anything else as JSON; text that looks like a JSON
// object or array is parsed on arrival. Descriptions are complete (ICE gathered before they are returned),
// so one request/response exchanges them. No STUN server unless given (host candidates: a LAN without
// internet works).

/** Decode a received message as the Python side does. */
export function decodeMessage(data) {
  if (typeof data === "string") {
    const start = data.trimStart()[0];
    if (start === "{" || start === "[") {
      try {
        return JSON.parse(data);
      } catch (e) {
        return data;
      }
    }
  }
  return data;
}

/** Encode a message to send: strings and binary as they are, anything else as JSON. */
export function encodeMessage(msg) {
  if (typeof msg === "string" || msg instanceof ArrayBuffer || ArrayBuffer.isView(msg) || msg instanceof Blob) {
    return msg;
  }
  return JSON.stringify(msg);
}

/** A minimal producer: subscribe(callback) returns the callback; unsubscribe(callback) removes it. */
class Producer {
  constructor() {
    this._subscribers = new Set();
  }
  subscribe(callback) {
    this._subscribers.add(callback);
    return callback;
  }
  unsubscribe(callback) {
    this._subscribers.delete(callback);
  }
  _put(value) {
    for (const callback of this._subscribers) {
      try {
        callback(value);
      } catch (e) {
        console.error("rtcbot: subscriber failed", e);
      }
    }
  }
}

/** conn.video / conn.audio: what to send, and where the other side's media goes. */
class MediaHandler extends Producer {
  constructor(kind, pc) {
    super();
    this.kind = kind;
    this._pc = pc;
    this._receive = 0; // how many remote tracks the offer asks for
    this._outgoing = []; // MediaStreamTracks to send
    this.streams = []; // remote MediaStreams, in arrival order
  }

  /** Receive remote media: `target` is a <video>/<audio> element (its srcObject is set) or a callback
   * called with each MediaStream. Makes the offer ask for one track, unless offerToReceive(n) asked for
   * more. */
  subscribe(target) {
    if (this._receive === 0) this.offerToReceive();
    const callback =
      target instanceof HTMLMediaElement
        ? (stream) => {
            if (!target.srcObject) target.srcObject = stream;
          }
        : target;
    return super.subscribe(callback);
  }

  /** Ask the offer for `count` more remote tracks of this kind without subscribing yet. */
  offerToReceive(count = 1) {
    this._receive += count;
  }

  /** Send a MediaStreamTrack (from getUserMedia) or every track of this kind in a MediaStream. */
  putSubscription(streamOrTrack) {
    const tracks =
      streamOrTrack instanceof MediaStream
        ? streamOrTrack.getTracks().filter((t) => t.kind === this.kind)
        : [streamOrTrack];
    for (const track of tracks) this._outgoing.push(track);
  }

  _onTrack(event) {
    const stream = event.streams[0] || new MediaStream([event.track]);
    this.streams.push(stream);
    this._put(stream);
  }
}

export class RTCConnection extends Producer {
  /** options: {ordered: true, iceServers: [] (e.g. [{urls: "stun:stun.l.google.com:19302"}]),
   * closeOnPageHide: true}. Closing the connection as the page goes away tells the robot at once (a
   * closed tab otherwise looks like a dead network, which WebRTC notices only after ~30 s). */
  constructor({ ordered = true, iceServers = [], closeOnPageHide = true } = {}) {
    super();
    this._onPageHide = () => this.close();
    if (closeOnPageHide) window.addEventListener("pagehide", this._onPageHide);
    this._pc = new RTCPeerConnection({ iceServers });
    this._ordered = ordered;
    this._channel = null;
    this._queued = [];
    this._closeCallbacks = [];
    this.video = new MediaHandler("video", this._pc);
    this.audio = new MediaHandler("audio", this._pc);
    this._pc.ontrack = (event) => (event.track.kind === "video" ? this.video : this.audio)._onTrack(event);
    this._pc.ondatachannel = (event) => {
      if (event.channel.label === "default") this._attach(event.channel);
    };
    this._pc.onconnectionstatechange = () => {
      const state = this._pc.connectionState;
      if (state === "failed" || state === "closed") this._closed();
    };
  }

  get connectionState() {
    return this._pc.connectionState;
  }

  /** The underlying RTCPeerConnection (for getStats()). */
  get peerConnection() {
    return this._pc;
  }

  _attach(channel) {
    this._channel = channel;
    channel.onmessage = (event) => this._put(decodeMessage(event.data));
    channel.onopen = () => this._flush();
    channel.onclose = () => this._closed();
    if (channel.readyState === "open") this._flush();
  }

  _flush() {
    const queued = this._queued;
    this._queued = [];
    for (const msg of queued) this._channel.send(msg);
  }

  /** Send a message on the default channel (queued until it opens). */
  put_nowait(msg) {
    const data = encodeMessage(msg);
    if (this._channel && this._channel.readyState === "open" && this._queued.length === 0) {
      this._channel.send(data);
    } else {
      this._queued.push(data);
    }
  }

  send(msg) {
    this.put_nowait(msg);
  }

  async _gathered() {
    const pc = this._pc;
    if (pc.iceGatheringState === "complete") return;
    await new Promise((resolve) => {
      const check = () => {
        if (pc.iceGatheringState === "complete") {
          pc.removeEventListener("icegatheringstatechange", check);
          resolve();
        }
      };
      pc.addEventListener("icegatheringstatechange", check);
    });
  }

  /** This side's description: an offer (data channel, tracks to send, media asked for), or, given the
   * other side's offer, the answer. */
  async getLocalDescription(remote = null) {
    if (remote !== null) await this.setRemoteDescription(remote);
    let description;
    if (this._pc.remoteDescription) {
      for (const handler of [this.video, this.audio]) {
        for (const track of handler._outgoing) this._pc.addTrack(track, new MediaStream([track]));
      }
      description = await this._pc.createAnswer();
    } else {
      this._attach(this._pc.createDataChannel("default", { ordered: this._ordered }));
      for (const handler of [this.video, this.audio]) {
        const sending = handler._outgoing.length;
        for (let i = 0; i < Math.max(sending, handler._receive); i++) {
          const track = handler._outgoing[i];
          const direction = track ? (i < handler._receive ? "sendrecv" : "sendonly") : "recvonly";
          this._pc.addTransceiver(track || handler.kind, {
            direction,
            streams: track ? [new MediaStream([track])] : [],
          });
        }
      }
      description = await this._pc.createOffer();
    }
    await this._pc.setLocalDescription(description);
    await this._gathered();
    return { sdp: this._pc.localDescription.sdp, type: this._pc.localDescription.type };
  }

  async setRemoteDescription(description) {
    await this._pc.setRemoteDescription(description);
  }

  /** Called once when the connection closes (from either side). */
  onClose(callback) {
    this._closeCallbacks.push(callback);
  }

  _closed() {
    const callbacks = this._closeCallbacks;
    this._closeCallbacks = [];
    for (const callback of callbacks) callback();
  }

  async close() {
    window.removeEventListener("pagehide", this._onPageHide);
    if (this._channel) this._channel.close();
    this._pc.close();
    this._closed();
  }
}

/** Offer `conn` to the server at `url` (POST the offer as JSON, get the answer back) and connect. */
export async function connect(conn, url) {
  const offer = await conn.getLocalDescription();
  const response = await fetch(url, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(offer),
  });
  if (!response.ok) throw new Error(`rtcbot: ${url} answered ${response.status}: ${await response.text()}`);
  await conn.setRemoteDescription(await response.json());
  return conn;
}

/** Keys as a producer: {type: "keydown" | "keyup", key, code} for each press and release (no repeats).
 * `held` is the set of codes held down now. Keys are released when the page loses focus. */
export class Keyboard extends Producer {
  constructor(target = window) {
    super();
    this.held = new Set();
    this._target = target;
    this._down = (e) => {
      if (e.repeat || e.target instanceof HTMLInputElement) return;
      this.held.add(e.code);
      this._put({ type: "keydown", key: e.key, code: e.code });
    };
    this._up = (e) => {
      if (!this.held.delete(e.code)) return;
      this._put({ type: "keyup", key: e.key, code: e.code });
    };
    this._blur = () => {
      for (const code of [...this.held]) {
        this.held.delete(code);
        this._put({ type: "keyup", key: "", code });
      }
    };
    target.addEventListener("keydown", this._down);
    target.addEventListener("keyup", this._up);
    window.addEventListener("blur", this._blur);
  }

  close() {
    this._target.removeEventListener("keydown", this._down);
    this._target.removeEventListener("keyup", this._up);
    window.removeEventListener("blur", this._blur);
  }
}

/** A gamepad (browser Gamepad API) as a producer: {type: "gamepad", index, id, axes: [...], buttons: [...]}
 * whenever an axis or button changes (axes rounded to 0.01; button values 0..1). Polled each animation
 * frame, as the API requires. */
export class Gamepad extends Producer {
  constructor(index = null) {
    super();
    this._index = index;
    this._last = "";
    this._running = true;
    const poll = () => {
      if (!this._running) return;
      this._poll();
      this._frame = requestAnimationFrame(poll);
    };
    this._frame = requestAnimationFrame(poll);
  }

  _poll() {
    const pads = navigator.getGamepads ? navigator.getGamepads() : [];
    const pad = [...pads].find((p) => p && (this._index === null || p.index === this._index));
    if (!pad) return;
    const state = {
      type: "gamepad",
      index: pad.index,
      id: pad.id,
      axes: pad.axes.map((a) => Math.round(a * 100) / 100),
      buttons: pad.buttons.map((b) => b.value),
    };
    const key = JSON.stringify([state.axes, state.buttons]);
    if (key !== this._last) {
      this._last = key;
      this._put(state);
    }
  }

  close() {
    this._running = false;
    cancelAnimationFrame(this._frame);
  }
}

/** A FIFO with an awaitable get(), as rtcbot's asyncio.Queue: `await queue.get()`. */
export class Queue {
  constructor() {
    this._items = [];
    this._waiting = [];
  }
  put_nowait(item) {
    const waiter = this._waiting.shift();
    if (waiter) waiter(item);
    else this._items.push(item);
  }
  get() {
    if (this._items.length) return Promise.resolve(this._items.shift());
    return new Promise((resolve) => this._waiting.push(resolve));
  }
}
