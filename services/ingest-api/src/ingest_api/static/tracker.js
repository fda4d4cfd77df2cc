/*! clickstream tracker.js (Apache-2.0): page views, track(), batching, beacon on page hide.
 *
 * <script async src="https://COLLECTOR/v1/tracker.js" data-write-key="KEY"></script>
 *   data-batch-size      events per request (default 20)
 *   data-flush-interval  ms between sends while the page is open (default 5000; 0 = only
 *                        when a batch is full and when the page is hidden)
 *   data-auto-page-view  "false" to send page views yourself with clickstream.page()
 *   data-consent         what the tracker does before the visitor consents (optIn()) or
 *                        after they refuse (optOut()):
 *                          "granted"   (default) track, until optOut(); then nothing
 *                          "anonymous" send events without identifiers: a random id that
 *                                      lives as long as the page, no user id, no session,
 *                                      nothing stored in the browser
 *                          "required"  send nothing and store nothing
 * API: clickstream.track(type, props), .page(props), .identify(userId, traits), .reset(),
 *      .flush(), .optIn(), .optOut(), .consent()
 * Calls made before the script loaded (window.clickstream = [[name, ...args], ...]) replay.
 */
(function (window, document) {
  "use strict";
  var previous = window.clickstream;
  if (previous && previous.loaded) return;

  var script = document.currentScript;
  function attr(name) {
    return script ? script.getAttribute(name) : null;
  }
  function number(value, fallback) {
    var n = parseInt(value, 10);
    return isNaN(n) || n < 0 ? fallback : n;
  }
  var src = script && script.src ? script.src : "";
  var base = src.split("/v1/tracker.js")[0];
  var srcKey = /[?&]write_key=([^&]+)/.exec(src);
  var config = {
    writeKey: attr("data-write-key") || (srcKey ? decodeURIComponent(srcKey[1]) : ""),
    endpoint: attr("data-endpoint") || base + "/v1/events",
    batchSize: Math.max(1, number(attr("data-batch-size"), 20)),
    flushInterval: number(attr("data-flush-interval"), 5000),
    autoPageView: attr("data-auto-page-view") !== "false",
    consent: attr("data-consent") || "granted",
    sessionTimeout: 30 * 60 * 1000,
    maxAttempts: 10,
    beaconLimit: 60000 // bytes; browsers refuse beacons over 64 KiB in flight
  };
  var PREFIX = "cs_";
  var QUEUE_PREFIX = PREFIX + "q.";
  var STALE_QUEUE_MS = 60 * 1000;
  var COMMERCE = ["product_id", "search_query", "quantity", "price", "revenue", "currency"];
  var CONSENT_KEY = PREFIX + "consent";

  // First-party storage; a page that may not use it still tracks, for its own lifetime.
  var memory = {};
  var disk = {
    get: function (key) {
      try {
        return window.localStorage.getItem(key);
      } catch (e) {
        return Object.prototype.hasOwnProperty.call(memory, key) ? memory[key] : null;
      }
    },
    set: function (key, value) {
      try {
        window.localStorage.setItem(key, value);
      } catch (e) {
        memory[key] = value;
      }
    },
    remove: function (key) {
      try {
        window.localStorage.removeItem(key);
      } catch (e) {
        delete memory[key];
      }
    },
    keys: function () {
      try {
        var out = [];
        for (var i = 0; i < window.localStorage.length; i++) out.push(window.localStorage.key(i));
        return out;
      } catch (e) {
        return Object.keys(memory);
      }
    }
  };

  // "full" (identifiers, stored), "anonymous" (no identifiers, nothing stored) or "off".
  function mode() {
    var choice = disk.get(CONSENT_KEY);
    if (choice === "granted") return "full";
    if (choice !== "denied" && config.consent === "granted") return "full";
    return config.consent === "anonymous" ? "anonymous" : "off";
  }
  // The visitor's identifiers and queues live in the browser only with full tracking.
  var store = {
    get: function (key) {
      return mode() === "full" ? disk.get(key) : null;
    },
    set: function (key, value) {
      if (mode() === "full") disk.set(key, value);
    },
    remove: disk.remove,
    keys: disk.keys
  };

  function uuid() {
    var c = window.crypto;
    if (c && c.randomUUID) return c.randomUUID();
    var b = new Uint8Array(16);
    if (c && c.getRandomValues) c.getRandomValues(b);
    else for (var i = 0; i < 16; i++) b[i] = Math.floor(Math.random() * 256);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    var h = "";
    for (var j = 0; j < 16; j++) h += (b[j] + 0x100).toString(16).slice(1);
    return h.slice(0, 8) + "-" + h.slice(8, 12) + "-" + h.slice(12, 16) + "-" +
      h.slice(16, 20) + "-" + h.slice(20);
  }

  var pageOnlyId = null;

  function anonymousId() {
    if (mode() !== "full") {
      if (!pageOnlyId) pageOnlyId = uuid();
      return pageOnlyId;
    }
    var id = store.get(PREFIX + "aid");
    if (!id) {
      id = uuid();
      store.set(PREFIX + "aid", id);
    }
    return id;
  }

  // A session ends after 30 minutes without an event; the next event starts a new one.
  function sessionId(now) {
    var raw = store.get(PREFIX + "session");
    var session = null;
    try {
      session = raw ? JSON.parse(raw) : null;
    } catch (e) {
      session = null;
    }
    if (!session || !session.id || now - session.last > config.sessionTimeout) {
      session = { id: uuid(), last: now };
    }
    session.last = now;
    store.set(PREFIX + "session", JSON.stringify(session));
    return session.id;
  }

  function snakeCase(name) {
    var text = String(name).toLowerCase().replace(/[^a-z0-9]+/g, "_").replace(/^_+|_+$/g, "");
    if (!/^[a-z]/.test(text)) text = "event_" + text;
    return text.slice(0, 64);
  }

  function context() {
    var ctx = { user_agent: navigator.userAgent, locale: navigator.language };
    try {
      ctx.timezone = Intl.DateTimeFormat().resolvedOptions().timeZone;
    } catch (e) {}
    if (window.screen) {
      ctx.screen_width = window.screen.width;
      ctx.screen_height = window.screen.height;
    }
    return ctx;
  }

  // Pending events of this page, persisted under a key of its own so a reload (or a page
  // that died before it could send) does not lose them; ids never change across retries.
  var pageKey = QUEUE_PREFIX + uuid();
  var queue = [];
  var inFlight = {};
  var attempts = 0;
  var timer = null;
  var retryAt = 0;

  function persist() {
    var waiting = queue.length > 0;
    if (waiting) store.set(pageKey, JSON.stringify({ t: Date.now(), events: queue }));
    else store.remove(pageKey);
  }

  function adoptOrphans() {
    var keys = store.keys();
    for (var i = 0; i < keys.length; i++) {
      var key = keys[i];
      if (!key || key.indexOf(QUEUE_PREFIX) !== 0 || key === pageKey) continue;
      try {
        var saved = JSON.parse(store.get(key));
        if (saved && Date.now() - saved.t > STALE_QUEUE_MS && saved.events) {
          store.remove(key);
          queue = queue.concat(saved.events);
        }
      } catch (e) {
        store.remove(key);
      }
    }
  }

  function pending() {
    var out = [];
    for (var i = 0; i < queue.length; i++) {
      if (!inFlight[queue[i].event_id]) out.push(queue[i]);
    }
    return out;
  }

  function forget(events) {
    var gone = {};
    for (var i = 0; i < events.length; i++) {
      gone[events[i].event_id] = true;
      delete inFlight[events[i].event_id];
    }
    queue = queue.filter(function (e) {
      return !gone[e.event_id];
    });
    persist();
  }

  function release(events) {
    for (var i = 0; i < events.length; i++) delete inFlight[events[i].event_id];
  }

  function url() {
    var sep = config.endpoint.indexOf("?") < 0 ? "?" : "&";
    return config.endpoint + sep + "write_key=" + encodeURIComponent(config.writeKey);
  }

  function body(events) {
    return JSON.stringify({ sent_at: new Date().toISOString(), events: events });
  }

  function schedule(delay) {
    if (timer) clearTimeout(timer);
    timer = setTimeout(function () {
      timer = null;
      flush();
    }, delay);
  }

  function backoff(retryAfterSeconds) {
    attempts += 1;
    var delay = Math.min(60000, 1000 * Math.pow(2, attempts - 1));
    if (retryAfterSeconds > 0) delay = Math.max(delay, retryAfterSeconds * 1000);
    delay += Math.floor(Math.random() * 250);
    retryAt = Date.now() + delay;
    schedule(delay);
  }

  // While the page is open: fetch, so the answer is known; retry 429/503 with backoff.
  function send(events) {
    for (var i = 0; i < events.length; i++) inFlight[events[i].event_id] = true;
    var text = body(events);
    var request;
    try {
      request = window.fetch(url(), {
        method: "POST",
        headers: { "Content-Type": "text/plain" },
        body: text,
        keepalive: text.length < config.beaconLimit,
        credentials: "omit",
        mode: "cors"
      });
    } catch (e) {
      request = Promise.reject(e);
    }
    request.then(
      function (response) {
        if (response.status === 429 || response.status === 408 || response.status >= 500) {
          release(events);
          var after = parseInt(response.headers.get("Retry-After") || "0", 10);
          if (attempts + 1 >= config.maxAttempts) forget(events);
          else backoff(isNaN(after) ? 0 : after);
          return;
        }
        // 2xx: stored. Other 4xx: refused for good (named in the answer); not retried.
        attempts = 0;
        retryAt = 0;
        forget(events);
        var left = pending().length;
        if (left >= config.batchSize) flush();
        else if (left && config.flushInterval > 0 && !timer) schedule(config.flushInterval);
      },
      function () {
        release(events);
        if (attempts + 1 >= config.maxAttempts) forget(events);
        else backoff(0);
      }
    );
  }

  // On page hide: sendBeacon, which the browser delivers after the page is gone.
  function beacon(events) {
    if (!navigator.sendBeacon) return false;
    var text = body(events);
    if (text.length > config.beaconLimit) return false;
    var sent = false;
    try {
      sent = navigator.sendBeacon(url(), new Blob([text], { type: "text/plain" }));
    } catch (e) {
      sent = false;
    }
    if (sent) forget(events);
    return sent;
  }

  function flush(hiding) {
    var events = pending();
    if (!events.length || !config.writeKey) return;
    if (hiding) {
      for (var i = 0; i < events.length; i += config.batchSize) {
        var chunk = events.slice(i, i + config.batchSize);
        if (!beacon(chunk)) send(chunk);
      }
      return;
    }
    if (Date.now() < retryAt) return; // backing off; the timer sends later
    send(events.slice(0, config.batchSize));
  }

  var userId = store.get(PREFIX + "uid");

  function forgetVisitor() {
    userId = null;
    disk.remove(PREFIX + "uid");
    disk.remove(PREFIX + "aid");
    disk.remove(PREFIX + "session");
  }

  function track(type, props) {
    var current = mode();
    if (current === "off") return null;
    var now = Date.now();
    var event = {
      event_id: uuid(),
      event_type: snakeCase(type),
      timestamp: new Date(now).toISOString(),
      anonymous_id: anonymousId(),
      page_url: window.location.href,
      context: context()
    };
    if (current === "full") {
      event.session_id = sessionId(now);
      if (userId) event.user_id = userId;
    }
    if (document.referrer) event.referrer = document.referrer;
    var properties = {};
    var any = false;
    if (props && typeof props === "object") {
      for (var key in props) {
        if (!Object.prototype.hasOwnProperty.call(props, key)) continue;
        if (COMMERCE.indexOf(key) >= 0) event[key] = props[key];
        else {
          properties[key] = props[key];
          any = true;
        }
      }
    }
    if (any) event.properties = properties;
    queue.push(event);
    persist();
    if (pending().length >= config.batchSize) flush();
    else if (config.flushInterval > 0 && !timer) schedule(config.flushInterval);
    return event.event_id;
  }

  var api = {
    loaded: true,
    config: config,
    track: track,
    page: function (props) {
      var p = { title: document.title };
      if (props) for (var k in props) p[k] = props[k];
      return track("page_view", p);
    },
    // Later events carry the user id; the identify event links it to the anonymous id and
    // carries the traits. Without consent to identifiers there is no one to identify.
    identify: function (id, traits) {
      if (mode() !== "full") return null;
      userId = id ? String(id) : null;
      if (!userId) {
        store.remove(PREFIX + "uid");
        return null;
      }
      store.set(PREFIX + "uid", userId);
      var props = { traits: traits && typeof traits === "object" ? traits : {} };
      return track("identify", props);
    },
    reset: forgetVisitor,
    optIn: function () {
      disk.set(CONSENT_KEY, "granted");
      pageOnlyId = null;
    },
    // Refusing drops what waits to be sent and every stored identifier.
    optOut: function () {
      disk.set(CONSENT_KEY, "denied");
      forgetVisitor();
      queue = [];
      inFlight = {};
      var keys = disk.keys();
      for (var i = 0; i < keys.length; i++) {
        if (keys[i] && keys[i].indexOf(QUEUE_PREFIX) === 0) disk.remove(keys[i]);
      }
    },
    consent: function () {
      var choice = disk.get(CONSENT_KEY);
      return choice === "granted" || choice === "denied" ? choice : "unset";
    },
    flush: function () {
      flush(false);
    },
    // The pre-load queue's push keeps working once the tracker has loaded.
    push: function (call) {
      if (call && typeof api[call[0]] === "function") api[call[0]].apply(api, call.slice(1));
    },
    anonymousId: anonymousId,
    sessionId: function () {
      return sessionId(Date.now());
    }
  };
  window.clickstream = api;

  document.addEventListener("visibilitychange", function () {
    if (document.visibilityState === "hidden") flush(true);
  });
  window.addEventListener("pagehide", function () {
    flush(true);
  });

  adoptOrphans();
  persist();
  if (previous && previous.length) {
    for (var i = 0; i < previous.length; i++) {
      var call = previous[i];
      if (call && api[call[0]]) api[call[0]].apply(api, call.slice(1));
    }
  }
  if (config.autoPageView) api.page();
  if (queue.length && config.flushInterval > 0) schedule(config.flushInterval);
})(window, document);
