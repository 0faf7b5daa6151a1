"""The site script the edge serves at /s.js (docs/site.md), rendered once per edge with its settings.

Plain ES5 and no eval, inline code or third-party cookie: it runs on the sender's site under a strict
Content-Security-Policy once the tracking domain is allowed in script-src and connect-src. It reads
its options from data- attributes of its own <script> tag, so no inline code is needed at all.
"""

from __future__ import annotations

import hashlib

import orjson

# __PARAM__ and __DAYS__ are replaced by render(); the rest is served as written.
SCRIPT_TEMPLATE = r"""/* pixeltrack site script: page views and conversions after an email click. docs/site.md */
(function (w, d, n) {
  "use strict";
  if (w.pixeltrack && w.pixeltrack.loaded) return;
  var PARAM = __PARAM__, DAYS = __DAYS__, CID = "pixeltrack.cid", CONSENT = "pixeltrack.consent";
  var me = d.currentScript, all, i;
  if (!me) {
    all = d.getElementsByTagName("script");
    for (i = all.length - 1; i >= 0 && !me; i--) if (/\/s\.js(\?|#|$)/.test(all[i].src)) me = all[i];
  }
  if (!me) return;
  function attr(name) { return me.getAttribute("data-" + name); }
  var endpoint = me.src.replace(/\/s\.js([?#].*)?$/, "/s/e");
  var days = parseFloat(attr("days"));
  if (!(days >= 0)) days = DAYS;
  var store = null;
  try { store = w.localStorage; store.getItem(CID); } catch (e) { store = null; }
  function get(k) { try { return store ? store.getItem(k) : null; } catch (e) { return null; } }
  function put(k, v) {
    try {
      if (store) { if (v === null) store.removeItem(k); else store.setItem(k, v); }
    } catch (e) { /* full, or off */ }
  }
  // Consent: Global Privacy Control and a stored "denied" always win; "required" waits for "granted".
  function consent() {
    if (n.globalPrivacyControl === true) return "denied";
    var c = get(CONSENT);
    if (c === "granted" || c === "denied") return c;
    return attr("consent") === "required" ? "unknown" : "granted";
  }
  // The click id: from this page's address (then taken out of it), else from storage while fresh.
  var fresh = "";
  try {
    var url = new URL(w.location.href), value = url.searchParams.get(PARAM);
    if (value) {
      fresh = value;
      if (attr("keep-param") === null && w.history && w.history.replaceState) {
        url.searchParams["delete"](PARAM);
        w.history.replaceState(w.history.state, "", url.pathname + url.search + url.hash);
      }
    }
  } catch (e) { fresh = ""; }
  function kept() {
    var raw = get(CID), o;
    if (!raw) return "";
    try { o = JSON.parse(raw); } catch (e) { o = null; }
    if (o && typeof o.id === "string" && typeof o.exp === "number" && o.exp > new Date().getTime()) return o.id;
    put(CID, null);
    return "";
  }
  function clickId() {
    if (consent() !== "granted") return "";
    if (fresh) {
      if (days > 0) put(CID, JSON.stringify({ id: fresh, exp: new Date().getTime() + days * 864e5 }));
      return fresh;
    }
    return kept();
  }
  function send(body) {
    var data = JSON.stringify(body);
    try { if (n.sendBeacon && n.sendBeacon(endpoint, data)) return; } catch (e) { /* fall through */ }
    try {
      if (w.fetch) {
        w.fetch(endpoint, { method: "POST", body: data, keepalive: true, mode: "no-cors", credentials: "omit" });
      }
    } catch (e) { /* lost */ }
  }
  function page() { return w.location.protocol + "//" + w.location.host + w.location.pathname; }
  var attributed = false, converted = {};
  function view() {
    var cid = clickId();
    attributed = !!cid;
    // Without a click id nothing individual leaves the page: the site's origin only, counted per site.
    send(cid ? { event: "view", click_id: cid, page: page() }
             : { event: "view", page: w.location.protocol + "//" + w.location.host + "/" });
  }
  function conversion(o) {
    o = o || {};
    var cid = clickId(), id = String(o.id || w.location.pathname);
    if (!cid || converted[id]) return false;  // nothing to attribute to; or sent from this page already
    converted[id] = true;
    send({ event: "conversion", click_id: cid, page: page(), value: Number(o.value) || 0,
           currency: o.currency ? String(o.currency) : "", id: id });
    return true;
  }
  function setConsent(state) {
    if (state !== "granted" && state !== "denied") return false;
    put(CONSENT, state);
    if (state === "denied") { put(CID, null); fresh = ""; return true; }
    if (!attributed && clickId()) view();  // granted after this page's view went out anonymous
    return true;
  }
  function api(command, arg) {
    if (command === "conversion") return conversion(arg);
    if (command === "consent") return setConsent(arg);
    if (command === "view") return view();
    return false;
  }
  var queued = (w.pixeltrack && w.pixeltrack.q) || [];
  w.pixeltrack = function (command, arg) { return api(command, arg); };
  w.pixeltrack.loaded = true;
  for (i = 0; i < queued.length; i++) if (queued[i][0] === "consent") api(queued[i][0], queued[i][1]);
  view();
  for (i = 0; i < queued.length; i++) if (queued[i][0] !== "consent") api(queued[i][0], queued[i][1]);
  if (attr("conversion-id") !== null) {
    conversion({ id: attr("conversion-id"), value: attr("conversion-value"), currency: attr("conversion-currency") });
  }
})(window, document, navigator);
"""


def render(click_id_param: str, days: int) -> bytes:
    """The script for an edge whose redirect appends `click_id_param`, keeping a click id `days` days by
    default (a page's data-days overrides it)."""
    return (SCRIPT_TEMPLATE.replace("__PARAM__", orjson.dumps(click_id_param).decode())
            .replace("__DAYS__", str(int(days)))).encode()


def etag(body: bytes) -> str:
    return '"' + hashlib.sha256(body).hexdigest()[:20] + '"'
