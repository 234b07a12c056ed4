// LiveFeed keeps a WebSocket to the notification service open through the gateway
// (browsers cannot set headers on a WebSocket, so the key goes as ?access_token=),
// reconnecting with a growing delay when it drops.
export class LiveFeed {
  constructor({ getKey, onMessage, onState }) {
    this.getKey = getKey;
    this.onMessage = onMessage;
    this.onState = onState;
    this.ws = null;
    this.delay = 1000;
    this.timer = 0;
    this.stopped = true;
  }

  start() {
    this.stopped = false;
    this.connect();
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    if (this.ws) this.ws.close(1000, 'bye');
    this.ws = null;
  }

  connect() {
    clearTimeout(this.timer);
    const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
    const url = `${scheme}//${location.host}/ws/notifications?access_token=${encodeURIComponent(this.getKey())}`;
    this.onState('connecting');
    let ws;
    try {
      ws = new WebSocket(url);
    } catch {
      this.retry();
      return;
    }
    this.ws = ws;
    ws.addEventListener('open', () => {
      this.delay = 1000;
      this.onState('open');
    });
    ws.addEventListener('message', (ev) => {
      let msg;
      try { msg = JSON.parse(ev.data); } catch { return; }
      this.onMessage(msg);
    });
    ws.addEventListener('close', () => {
      if (this.ws === ws) this.ws = null;
      if (!this.stopped) this.retry();
    });
  }

  retry() {
    this.onState('down', Math.round(this.delay / 1000));
    this.timer = setTimeout(() => this.connect(), this.delay);
    this.delay = Math.min(this.delay * 2, 30000);
  }
}
