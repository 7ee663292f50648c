// Stands in for @daily-co/daily-js in the browser tests' bundle (dist/vapi-fake-daily.js), so a
// call can "start" without a Daily room: join() resolves at once and records what it was given
// in window.dailyJoins; then the assistant says it is listening, as Vapi's does.
// Only the methods the SDK calls are here.

class FakeCall {
  constructor(options) {
    this.options = options;
    this.listeners = new Map();
  }

  on(event, listener) {
    if (!this.listeners.has(event)) this.listeners.set(event, []);
    this.listeners.get(event).push(listener);
    return this;
  }

  once(event, listener) {
    const wrapped = (e) => {
      this.off(event, wrapped);
      listener(e);
    };
    return this.on(event, wrapped);
  }

  off(event, listener) {
    this.listeners.set(event, (this.listeners.get(event) || []).filter((l) => l !== listener));
    return this;
  }

  emit(event, e) {
    for (const listener of this.listeners.get(event) || []) listener(e);
  }

  iframe() {
    return null;
  }

  async join(options) {
    window.dailyJoins.push({ ...options, callObject: this.options });
    setTimeout(() => this.emit("app-message", { data: "listening", fromId: "assistant" }), 0);
    return {};
  }

  async leave() {
    this.emit("left-meeting", { action: "left-meeting" });
  }

  async destroy() {
    window.dailyDestroyed += 1;
  }

  startRemoteParticipantsAudioLevelObserver() {}
  async startLocalAudioLevelObserver() {}
  async updateInputSettings() {
    return {};
  }
  setLocalAudio() {}
  sendAppMessage() {}
  participants() {
    return {};
  }
  stopRecording() {}
}

window.dailyJoins = [];
window.dailyDestroyed = 0;

export default {
  createCallObject(options) {
    return new FakeCall(options);
  },
};
