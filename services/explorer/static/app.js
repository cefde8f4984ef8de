// Vitrine explorer: search the collection, like and dislike objects, get recommendations, open an
// object and review the tagger's suggestions.
//
// Plain ES module, no framework and no build step. The gateway answers protobuf-JSON
// (snake_case keys, enum names, default values left out), so every field is read with a fallback.
// Server text is only ever written with textContent / attributes, never parsed as HTML.

const PAGE_SIZE = 24;
const RECOMMEND_K = 12;
const SIMILAR_K = 8;
const SUGGESTIONS_K = 10;
const SLOW_AFTER_MS = 1500;
const REQUEST_TIMEOUT_MS = 60000;
const SEEN_KEY = "vitrine.explorer.seen";
const RECOMMEND_CACHE_KEY = "vitrine.explorer.recommend";
const UNREACHABLE = "The explorer cannot reach the server.";

const SIGNALS = {
  text: "Text: the meaning of the title and description",
  keyword: "Keyword: exact words",
  image: "Image: the picture matches the words",
  tags: "Tags: subject tags",
  visual: "Visual: looks alike",
};

// ---------------------------------------------------------------------------------------------
// Small DOM helpers

const $ = (selector, root = document) => root.querySelector(selector);
const $$ = (selector, root = document) => Array.from(root.querySelectorAll(selector));

/** Create an element. attrs: class, text, hidden and any attribute; children: nodes or strings. */
function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key === "hidden") node.hidden = Boolean(value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

const SVG_NS = "http://www.w3.org/2000/svg";
const ICONS = {
  like: "M7 10v11M7 10l4-7c1.4 0 2.4 1.2 2.1 2.6L12.5 9H19a2 2 0 0 1 2 2.3l-1.3 7.4A2 2 0 0 1 17.7 21H7M7 10H4v11h3",
  dislike: "M17 14V3M17 14l-4 7c-1.4 0-2.4-1.2-2.1-2.6l.6-3.4H5a2 2 0 0 1-2-2.3l1.3-7.4A2 2 0 0 1 6.3 3H17M17 14h3V3h-3",
};

function icon(name) {
  const svg = document.createElementNS(SVG_NS, "svg");
  svg.setAttribute("viewBox", "0 0 24 24");
  svg.setAttribute("width", "18");
  svg.setAttribute("height", "18");
  svg.setAttribute("aria-hidden", "true");
  svg.setAttribute("focusable", "false");
  const path = document.createElementNS(SVG_NS, "path");
  path.setAttribute("d", ICONS[name]);
  path.setAttribute("fill", "none");
  path.setAttribute("stroke", "currentColor");
  path.setAttribute("stroke-width", "1.8");
  path.setAttribute("stroke-linecap", "round");
  path.setAttribute("stroke-linejoin", "round");
  svg.append(path);
  return svg;
}

const quote = (text) => `\u201c${text}\u201d`;
const percent = (score) => `${Math.round(Math.max(0, Math.min(1, Number(score) || 0)) * 100)}%`;
const fixed = (value, digits = 2) => (Number(value) || 0).toFixed(digits);
const signed = (value, digits = 2) => {
  const n = Number(value) || 0;
  return `${n > 0 ? "+" : n < 0 ? "\u2212" : ""}${Math.abs(n).toFixed(digits)}`;
};
const formatCount = (value) => {
  const n = Number(value);
  return Number.isFinite(n) ? n.toLocaleString("en") : String(value);
};
const stripEnum = (value, prefix) =>
  typeof value === "string" && value.startsWith(prefix) ? value.slice(prefix.length) : String(value || "");
const signalName = (value) => stripEnum(value, "SIGNAL_").toLowerCase();
const objectTitle = (obj) => (obj && obj.title) || (obj && obj.id ? `Untitled (${obj.id})` : "Untitled");
const escapeSelector = (value) => (window.CSS && CSS.escape ? CSS.escape(value) : String(value).replace(/["\\]/g, "\\$&"));

function uuid() {
  try {
    if (window.crypto && typeof crypto.randomUUID === "function") return crypto.randomUUID();
  } catch (_) { /* not a secure context */ }
  const bytes = new Uint8Array(16);
  if (window.crypto && crypto.getRandomValues) crypto.getRandomValues(bytes);
  else for (let i = 0; i < 16; i++) bytes[i] = Math.floor(Math.random() * 256);
  bytes[6] = (bytes[6] & 0x0f) | 0x40;
  bytes[8] = (bytes[8] & 0x3f) | 0x80;
  const hex = Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

// ---------------------------------------------------------------------------------------------
// HTTP

class ApiError extends Error {
  constructor(message, status = 0, code = "") {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.code = code;
  }
}

function abortError() {
  const err = new Error("aborted");
  err.name = "AbortError";
  return err;
}

/** Call the gateway; resolves with the JSON answer, rejects with ApiError (or AbortError). */
async function api(path, { method = "GET", body, signal } = {}) {
  if (signal && signal.aborted) throw abortError();
  const controller = new AbortController();
  let timedOut = false;
  const timer = setTimeout(() => { timedOut = true; controller.abort(); }, REQUEST_TIMEOUT_MS);
  const onAbort = () => controller.abort();
  if (signal) signal.addEventListener("abort", onAbort, { once: true });
  try {
    let response;
    try {
      response = await fetch(path, {
        method,
        headers: body === undefined
          ? { Accept: "application/json" }
          : { Accept: "application/json", "Content-Type": "application/json" },
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: controller.signal,
        credentials: "same-origin",
      });
    } catch (_) {
      if (signal && signal.aborted) throw abortError();
      if (timedOut) throw new ApiError("The server took too long to answer. Please try again.", 0, "TIMEOUT");
      throw new ApiError(UNREACHABLE, 0, "UNREACHABLE");
    }
    let text = "";
    try {
      text = await response.text();
    } catch (_) {
      if (signal && signal.aborted) throw abortError();
      throw new ApiError(timedOut ? "The server took too long to answer. Please try again." : UNREACHABLE, response.status);
    }
    let data = null;
    if (text) {
      try { data = JSON.parse(text); } catch (_) { data = null; }
    }
    if (!response.ok) {
      const error = data && typeof data === "object" && data.error ? data.error : {};
      const message = (typeof error.message === "string" && error.message) ||
        (response.status >= 500 || response.status === 0
          ? UNREACHABLE
          : `The server refused the request (HTTP ${response.status}).`);
      throw new ApiError(message, response.status, error.code || "");
    }
    if (data === null || typeof data !== "object") {
      if (!text) return {};
      throw new ApiError("The server sent an answer the explorer cannot read.", response.status);
    }
    return data;
  } finally {
    clearTimeout(timer);
    if (signal) signal.removeEventListener("abort", onAbort);
  }
}

// ---------------------------------------------------------------------------------------------
// State

const state = {
  query: "",
  filters: emptyFilters(),
  likes: new Set(),
  dislikes: new Set(),
  diversify: false,
  view: "search", // what the results show: "search" | "recommend"
  openId: null,
};

const seen = loadSeen(); // every object id shown this session
const objectCache = new Map(); // id -> object, from any answer

const searchPages = { tokens: [""], next: "" }; // tokens of the pages visited; next page's token
let recommendPages = { key: "", pages: [], index: -1 }; // recommendation pages shown, for "previous"

let resultsSeq = 0;
let resultsController = null;
let slowTimer = null;
let resultsKey = null; // what the results currently show (see viewKey)
let retry = null; // repeats the last results request

let objectSeq = 0;
let objectController = null;
let returnFocus = null; // { element, id } to focus when the panel closes

let lastHash = null; // the hash this page wrote last (to tell our writes from navigation)
let titleIdCounter = 0;

function emptyFilters() {
  return { artist: "", classification: "", medium: "", yearFrom: "", yearTo: "", hasImage: false };
}

function hasFilters(filters = state.filters) {
  return Boolean(filters.artist || filters.classification || filters.medium ||
    filters.yearFrom !== "" || filters.yearTo !== "" || filters.hasImage);
}

function loadSeen() {
  try {
    const raw = sessionStorage.getItem(SEEN_KEY);
    const list = raw ? JSON.parse(raw) : [];
    return new Set(Array.isArray(list) ? list.filter((id) => typeof id === "string") : []);
  } catch (_) {
    return new Set();
  }
}

function saveSeen() {
  try { sessionStorage.setItem(SEEN_KEY, JSON.stringify([...seen])); } catch (_) { /* storage full or off */ }
}

function markSeen(ids) {
  let added = false;
  for (const id of ids) {
    if (id && !seen.has(id)) { seen.add(id); added = true; }
  }
  if (added) { saveSeen(); updateSessionUI(); }
}

function cacheObject(obj) {
  if (obj && obj.id) objectCache.set(obj.id, { ...(objectCache.get(obj.id) || {}), ...obj });
}

// ---------------------------------------------------------------------------------------------
// URL hash: #q=ship&artist=...&likes=a,b&dislikes=c&diversify=1&view=recommend&obj=ID

function parseYear(value) {
  const text = String(value ?? "").trim();
  if (!/^-?\d{1,6}$/.test(text)) return "";
  return String(parseInt(text, 10));
}

function buildHash(s = state, overrides = {}) {
  const v = { ...s, ...overrides };
  const f = v.filters || emptyFilters();
  const parts = [];
  const add = (key, value) => {
    if (value !== "" && value !== null && value !== undefined && value !== false) {
      parts.push(`${key}=${encodeURIComponent(value)}`);
    }
  };
  const addList = (key, values) => {
    const list = [...values];
    if (list.length) parts.push(`${key}=${list.map(encodeURIComponent).join(",")}`);
  };
  add("q", v.query);
  add("artist", f.artist);
  add("classification", f.classification);
  add("medium", f.medium);
  add("year_from", f.yearFrom);
  add("year_to", f.yearTo);
  add("has_image", f.hasImage ? "1" : "");
  addList("likes", v.likes || []);
  addList("dislikes", v.dislikes || []);
  add("diversify", v.diversify ? "1" : "");
  add("view", v.view === "recommend" ? "recommend" : "");
  add("obj", v.openId);
  return parts.length ? `#${parts.join("&")}` : "";
}

function parseHash(hash) {
  const out = {
    query: "", filters: emptyFilters(), likes: [], dislikes: [], diversify: false, view: "search", openId: null,
  };
  const decode = (raw) => {
    try { return decodeURIComponent(raw.replace(/\+/g, " ")); } catch (_) { return raw; }
  };
  const list = (raw) => raw.split(",").map((item) => decode(item).trim()).filter(Boolean);
  const truthy = (raw) => ["1", "true", "yes", "on"].includes(decode(raw).toLowerCase());
  for (const part of String(hash || "").replace(/^#/, "").split("&")) {
    if (!part) continue;
    const eq = part.indexOf("=");
    const key = decode(eq < 0 ? part : part.slice(0, eq));
    const raw = eq < 0 ? "" : part.slice(eq + 1);
    switch (key) {
      case "q": out.query = decode(raw); break;
      case "artist": out.filters.artist = decode(raw); break;
      case "classification": out.filters.classification = decode(raw); break;
      case "medium": out.filters.medium = decode(raw); break;
      case "year_from": out.filters.yearFrom = parseYear(decode(raw)); break;
      case "year_to": out.filters.yearTo = parseYear(decode(raw)); break;
      case "has_image": out.filters.hasImage = truthy(raw); break;
      case "likes": out.likes = list(raw); break;
      case "dislikes": out.dislikes = list(raw); break;
      case "diversify": out.diversify = truthy(raw); break;
      case "view": out.view = decode(raw) === "recommend" ? "recommend" : "search"; break;
      case "obj": out.openId = decode(raw) || null; break;
      default: break;
    }
  }
  return out;
}

/** Write the session to the URL. push: a new history entry (new search or recommendation). */
function writeHash({ push = false } = {}) {
  const hash = buildHash();
  if (hash !== location.hash && !(hash === "" && location.hash === "")) {
    const url = hash || `${location.pathname}${location.search}`;
    try {
      history[push ? "pushState" : "replaceState"](null, "", url);
    } catch (_) { /* sandboxed: the session still works, only the URL does not follow */ }
  }
  lastHash = location.hash;
}

function viewKey(view, s = state) {
  const f = s.filters;
  const filters = [f.artist, f.classification, f.medium, f.yearFrom, f.yearTo, f.hasImage ? 1 : 0];
  if (view === "recommend") {
    return JSON.stringify(["recommend", [...s.likes].sort(), [...s.dislikes].sort(), s.diversify, filters]);
  }
  return JSON.stringify(["search", s.query.trim(), filters]);
}

/** Restore the session from the hash (page load, shared URL, back/forward, edited URL). */
function applyHash(hash, { initial = false } = {}) {
  const parsed = parseHash(hash);
  state.query = parsed.query;
  state.filters = parsed.filters;
  state.likes = new Set(parsed.likes);
  state.dislikes = new Set(parsed.dislikes.filter((id) => !state.likes.has(id)));
  state.diversify = parsed.diversify;
  writeForm();
  updateSessionUI();
  refreshAllReactions();
  lastHash = location.hash;

  if (parsed.view === "recommend" && state.likes.size) {
    state.view = "recommend";
    const key = viewKey("recommend");
    if (initial || resultsKey !== key) {
      const cached = initial ? loadRecommendCache(key) : null;
      if (cached) {
        recommendPages = cached;
        showRecommendPage(recommendPages.index, { announce: true });
      } else {
        runRecommend({ fresh: true, pushHistory: false });
      }
    }
  } else if (state.query.trim()) {
    state.view = "search";
    if (initial || resultsKey !== viewKey("search")) runSearch({ pushHistory: false });
  } else {
    state.view = "search";
    if (!initial) resetResults();
    setStatus(initial ? "Type a word or two to search the collection." : "");
  }

  if (parsed.openId) {
    if (state.openId !== parsed.openId) openObject(parsed.openId, { opener: null });
  } else if (state.openId) {
    closeObject({ restoreFocus: false });
  }
}

function onNavigate() {
  if (location.hash === lastHash) return;
  applyHash(location.hash);
}

// ---------------------------------------------------------------------------------------------
// Form

const form = $("#search-form");
const queryInput = $("#query");
const filterInputs = {
  artist: $("#filter-artist"),
  classification: $("#filter-classification"),
  medium: $("#filter-medium"),
  yearFrom: $("#filter-year-from"),
  yearTo: $("#filter-year-to"),
  hasImage: $("#filter-has-image"),
};

function readForm() {
  state.query = queryInput.value.trim();
  state.filters = {
    artist: filterInputs.artist.value.trim(),
    classification: filterInputs.classification.value.trim(),
    medium: filterInputs.medium.value.trim(),
    yearFrom: parseYear(filterInputs.yearFrom.value),
    yearTo: parseYear(filterInputs.yearTo.value),
    hasImage: filterInputs.hasImage.checked,
  };
  state.diversify = $("#diversify").checked;
}

function writeForm() {
  queryInput.value = state.query;
  filterInputs.artist.value = state.filters.artist;
  filterInputs.classification.value = state.filters.classification;
  filterInputs.medium.value = state.filters.medium;
  filterInputs.yearFrom.value = state.filters.yearFrom;
  filterInputs.yearTo.value = state.filters.yearTo;
  filterInputs.hasImage.checked = state.filters.hasImage;
  $("#diversify").checked = state.diversify;
}

/** The filter as RecommendRequest/MoreLikeThis want it (only the keys that are set). */
function filterMessage(filters = state.filters) {
  const out = {};
  if (filters.artist) out.artists = [filters.artist];
  if (filters.classification) out.classifications = [filters.classification];
  if (filters.medium) out.mediums = [filters.medium];
  if (filters.yearFrom !== "") out.year_from = Number(filters.yearFrom);
  if (filters.yearTo !== "") out.year_to = Number(filters.yearTo);
  if (filters.hasImage) out.has_image = true;
  return out;
}

function searchParams(query, token, filters = state.filters) {
  const params = new URLSearchParams();
  params.set("q", query);
  if (token) params.set("page_token", token);
  params.set("page_size", String(PAGE_SIZE));
  if (filters.artist) params.append("artist", filters.artist);
  if (filters.classification) params.append("classification", filters.classification);
  if (filters.medium) params.append("medium", filters.medium);
  if (filters.yearFrom !== "") params.set("year_from", filters.yearFrom);
  if (filters.yearTo !== "") params.set("year_to", filters.yearTo);
  if (filters.hasImage) params.set("has_image", "true");
  return params;
}

// ---------------------------------------------------------------------------------------------
// Results area: loading, status, error, notices, empty state

const resultsEl = $("#results");
const statusEl = $("#status");
const announcerEl = $("#announcer");
const errorEl = $("#error");
const emptyEl = $("#empty");
const noticesEl = $("#notices");
const degradedEl = $("#degraded");
const prevButton = $("#prev-page");
const nextButton = $("#next-page");
const pageLabel = $("#page-label");

function setStatus(text, { busy = false, quiet = false } = {}) {
  statusEl.textContent = text;
  statusEl.classList.toggle("is-busy", busy);
  // quiet: the same words are on screen already (empty state); screen readers still hear them.
  statusEl.classList.toggle("quiet", quiet);
}

function announce(text) {
  announcerEl.textContent = "";
  // A fresh text node so screen readers announce repeated messages too.
  window.setTimeout(() => { announcerEl.textContent = text; }, 30);
}

/** Start a results request; returns a context that knows whether it is still the newest. */
function beginResults(loadingText) {
  const seq = ++resultsSeq;
  if (resultsController) resultsController.abort();
  resultsController = new AbortController();
  const signal = resultsController.signal;
  clearTimeout(slowTimer);
  resultsEl.dataset.state = "loading";
  resultsEl.setAttribute("aria-busy", "true");
  setStatus(loadingText, { busy: true });
  slowTimer = window.setTimeout(() => {
    if (seq === resultsSeq) setStatus("Still working\u2026", { busy: true });
  }, SLOW_AFTER_MS);
  return {
    signal,
    current: () => seq === resultsSeq,
    finish() {
      if (seq !== resultsSeq) return;
      clearTimeout(slowTimer);
      resultsEl.setAttribute("aria-busy", "false");
      statusEl.classList.remove("is-busy");
      resultsController = null;
    },
  };
}

function showError(err) {
  $("#error-message").textContent = (err && err.message) || UNREACHABLE;
  errorEl.hidden = false;
  resultsEl.dataset.state = "error";
  setStatus("The last request failed. Earlier results, if any, are still shown below.");
}

function hideError() {
  errorEl.hidden = true;
  $("#error-message").textContent = "";
}

function showNotices(notices) {
  noticesEl.replaceChildren(...notices.filter(Boolean).map((text) => h("p", { class: "notice", text })));
  noticesEl.hidden = noticesEl.childElementCount === 0;
}

function showUnavailable(signals) {
  const names = [...new Set((signals || []).map(signalName).filter((name) => name && name !== "unspecified"))];
  if (!names.length) {
    degradedEl.hidden = true;
    degradedEl.textContent = "";
    return;
  }
  const label = (name) => ({ text: "text", keyword: "keyword", image: "image", tags: "tag", visual: "visual" }[name] || name);
  const joined = names.map(label).join(" and ");
  const remaining = ["text", "keyword", "image", "tags"].filter((name) => !names.includes(name));
  const using = remaining.length ? `results use ${remaining.map(label).join(", ").replace(/, ([^,]*)$/, " and $1")} matching only` : "results may be incomplete";
  degradedEl.textContent = `${joined.charAt(0).toUpperCase()}${joined.slice(1)} matching is unavailable right now; ${using}.`;
  degradedEl.hidden = false;
}

function hideEmpty() {
  emptyEl.hidden = true;
  $("#alternatives").replaceChildren();
}

function resetResults() {
  resultsSeq++;
  if (resultsController) resultsController.abort();
  clearTimeout(slowTimer);
  resultsEl.replaceChildren();
  resultsEl.dataset.state = "ok";
  resultsEl.setAttribute("aria-busy", "false");
  resultsKey = null;
  hideEmpty();
  hideError();
  showNotices([]);
  showUnavailable([]);
  updatePager(false, false, "");
  $("#results-heading").textContent = "Results";
}

function showEmpty(title, hint, alternatives) {
  $("#empty-title").textContent = title;
  $("#empty-hint").textContent = hint;
  $("#alternatives").replaceChildren(...alternatives.map(({ label, href, action }) =>
    h("li", {}, h("a", { class: "alternative", href: href || "#", "data-action": action || null, text: label }))));
  emptyEl.hidden = false;
}

function updatePager(hasPrev, hasNext, label) {
  prevButton.hidden = !hasPrev;
  prevButton.disabled = !hasPrev;
  nextButton.hidden = !hasNext;
  nextButton.disabled = !hasNext;
  pageLabel.textContent = label;
}

function renderHits(hits) {
  const tiles = hits.map((hit) => renderTile(hit)).filter(Boolean);
  resultsEl.replaceChildren(...tiles);
  markSeen(tiles.map((tile) => tile.dataset.id));
}

/** Shorter queries to offer when a search finds nothing. */
function shorterQueries(query) {
  const words = query.split(/\s+/).filter(Boolean);
  if (words.length < 2) return [];
  const out = [];
  const push = (q) => {
    if (q && q !== query && !out.includes(q)) out.push(q);
  };
  push(words.slice(0, -1).join(" "));
  for (const word of words) push(word);
  return out.slice(0, 3);
}

// ---------------------------------------------------------------------------------------------
// Search

async function runSearch({ token = "", resetPages = true, pushHistory = true, focusResults = false } = {}) {
  const query = state.query.trim();
  if (!query) {
    setStatus("Type a word or two to search the collection.");
    queryInput.focus();
    return;
  }
  if (resetPages) {
    searchPages.tokens = [""];
    searchPages.next = "";
  }
  const filters = { ...state.filters };
  state.view = "search";
  writeHash({ push: pushHistory });
  const key = viewKey("search");
  retry = () => runSearch({ token, resetPages: false, pushHistory: false });
  const ctx = beginResults(`Searching for ${quote(query)}\u2026`);
  try {
    const data = await api(`/api/search?${searchParams(query, token, filters)}`, { signal: ctx.signal });
    if (!ctx.current()) return;
    const hits = Array.isArray(data.hits) ? data.hits : [];
    const page = data.page || {};
    searchPages.next = page.next_page_token || "";
    resultsKey = key;
    hideError();
    resultsEl.dataset.source = "search";
    const notices = Array.isArray(data.notices) ? data.notices : [];
    showNotices(notices);
    // The server's notices already say why a signal is missing (e.g. no CLIP weights): one message, not two.
    showUnavailable(notices.length ? [] : data.unavailable_signals);
    $("#results-heading").textContent = `Results for ${quote(query)}`;
    const pageIndex = searchPages.tokens.length - 1;

    if (!hits.length) {
      resultsEl.replaceChildren();
      resultsEl.dataset.state = "empty";
      updatePager(pageIndex > 0, false, pageIndex > 0 ? `Page ${pageIndex + 1}` : "");
      if (pageIndex > 0) {
        showEmpty("No more results", "You have reached the end of the results.", []);
        setStatus(`No more results for ${quote(query)}.`, { quiet: true });
        return;
      }
      const alternatives = [];
      if (hasFilters(filters)) {
        alternatives.push({ label: "Search without filters", href: buildHash(state, { filters: emptyFilters(), view: "search", openId: null }) });
      }
      for (const q of shorterQueries(query)) {
        alternatives.push({ label: `Search for ${quote(q)}`, href: buildHash(state, { query: q, view: "search", openId: null }) });
      }
      showEmpty(`No results for ${quote(query)}`,
        alternatives.length ? "Try one of these instead:" : "Check the spelling, or try fewer or more general words.",
        alternatives);
      setStatus(`No results for ${quote(query)}.`, { quiet: true });
      return;
    }

    hideEmpty();
    renderHits(hits);
    resultsEl.dataset.state = "ok";
    const total = page.total_size === undefined ? NaN : Number(page.total_size);
    const start = pageIndex * PAGE_SIZE + 1;
    const end = pageIndex * PAGE_SIZE + hits.length;
    const of = Number.isFinite(total) && total >= end ? ` of ${formatCount(total)}` : "";
    setStatus(`Showing ${start}\u2013${end}${of} results for ${quote(query)}${hasFilters(filters) ? " (filtered)" : ""}.`);
    updatePager(pageIndex > 0, Boolean(searchPages.next), pageIndex > 0 || searchPages.next ? `Page ${pageIndex + 1}` : "");
    if (focusResults) $("#results-heading").focus();
  } catch (err) {
    if (!ctx.current() || err.name === "AbortError") return;
    showError(err);
  } finally {
    ctx.finish();
  }
}

// ---------------------------------------------------------------------------------------------
// Recommendations

function saveRecommendCache() {
  try { sessionStorage.setItem(RECOMMEND_CACHE_KEY, JSON.stringify(recommendPages)); } catch (_) { /* ignore */ }
}

function loadRecommendCache(key) {
  try {
    const cached = JSON.parse(sessionStorage.getItem(RECOMMEND_CACHE_KEY) || "null");
    if (cached && cached.key === key && Array.isArray(cached.pages) && cached.pages.length &&
        cached.index >= 0 && cached.index < cached.pages.length) return cached;
  } catch (_) { /* ignore */ }
  return null;
}

function showRecommendPage(index, { announce: say = false, focusResults = false } = {}) {
  const hits = recommendPages.pages[index] || [];
  recommendPages.index = index;
  resultsKey = recommendPages.key;
  state.view = "recommend";
  resultsEl.dataset.source = "recommend";
  hideError();
  showNotices([]);
  showUnavailable([]);
  $("#results-heading").textContent = "Recommended for you";
  const likes = state.likes.size;
  if (!hits.length) {
    resultsEl.replaceChildren();
    resultsEl.dataset.state = "empty";
    const alternatives = [];
    if (seen.size) alternatives.push({ label: "Include objects I have already seen", action: "forget-seen" });
    if (hasFilters()) alternatives.push({ label: "Recommend without filters", action: "recommend-unfiltered" });
    if (state.query.trim()) {
      alternatives.push({ label: `Back to results for ${quote(state.query.trim())}`, href: buildHash(state, { view: "search", openId: null }) });
    }
    showEmpty("No more recommendations", "Everything close to your likes has been shown. Like a few more objects, or:", alternatives);
    setStatus("No more recommendations for your likes.", { quiet: true });
  } else {
    hideEmpty();
    renderHits(hits);
    resultsEl.dataset.state = "ok";
    const text = `${hits.length} recommendation${hits.length === 1 ? "" : "s"} based on ${likes} liked object${likes === 1 ? "" : "s"}` +
      `${state.dislikes.size ? ` and ${state.dislikes.size} disliked` : ""}${state.diversify ? ", diversified" : ""}.`;
    setStatus(text);
    if (say) announce(text);
  }
  updatePager(index > 0, hits.length > 0, `Recommendations, page ${index + 1}`);
  if (focusResults) $("#results-heading").focus();
}

async function runRecommend({ fresh = false, pushHistory = true, focusResults = false } = {}) {
  if (!state.likes.size) {
    setStatus("Like at least one object to get recommendations.");
    return;
  }
  const key = viewKey("recommend");
  if (fresh || recommendPages.key !== key || state.view !== "recommend") {
    recommendPages = { key, pages: [], index: -1 };
  }
  state.view = "recommend";
  writeHash({ push: pushHistory });
  const body = {
    liked_ids: [...state.likes],
    disliked_ids: [...state.dislikes],
    seen_ids: [...seen],
    k: RECOMMEND_K,
    diversify: state.diversify,
    filter: filterMessage(),
  };
  retry = () => runRecommend({ pushHistory: false });
  const ctx = beginResults("Finding objects like the ones you liked\u2026");
  try {
    const data = await api("/api/recommend", { method: "POST", body, signal: ctx.signal });
    if (!ctx.current()) return;
    const hits = (Array.isArray(data.hits) ? data.hits : []).filter((hit) => hit && hit.object && hit.object.id);
    // Keep the page's promise even if a server returned a seen id.
    const seenBefore = new Set(body.seen_ids);
    const unseen = hits.filter((hit) => !seenBefore.has(hit.object.id));
    recommendPages.pages = recommendPages.pages.slice(0, recommendPages.index + 1);
    recommendPages.pages.push(unseen);
    showRecommendPage(recommendPages.pages.length - 1, { focusResults });
    saveRecommendCache();
  } catch (err) {
    if (!ctx.current() || err.name === "AbortError") return;
    showError(err);
  } finally {
    ctx.finish();
  }
}

// ---------------------------------------------------------------------------------------------
// Tiles, likes and dislikes

function renderTile(hit, { compact = false } = {}) {
  const obj = (hit && hit.object) || {};
  const id = obj.id;
  if (!id) return null;
  cacheObject(obj);
  const title = objectTitle(obj);
  const titleId = `tile-title-${++titleIdCounter}`;

  const frame = h("div", { class: obj.image_url ? "frame" : "frame placeholder" });
  if (obj.image_url) {
    const img = h("img", { class: "thumb", src: obj.image_url, alt: title, loading: "lazy", decoding: "async" });
    img.addEventListener("error", () => {
      frame.classList.add("placeholder", "broken");
      img.replaceWith(placeholderContent(obj, "Image not available"));
    }, { once: true });
    frame.append(img);
  } else {
    frame.append(placeholderContent(obj, "No image"));
  }

  const link = h("a", { class: "open", href: buildHash(state, { openId: id }), "data-id": id, "aria-labelledby": titleId },
    frame, h("h3", { class: "title", id: titleId, text: title }));

  const signals = h("ul", { class: "signals", "aria-label": "Matched by" });
  const seenSignals = new Set();
  for (const match of Array.isArray(hit.signals) ? hit.signals : []) {
    const name = signalName(match && match.signal);
    if (!SIGNALS[name] || seenSignals.has(name)) continue;
    seenSignals.add(name);
    const rank = Number(match.rank) || 0;
    const score = match.score === undefined ? "" : `, score ${fixed(match.score)}`;
    signals.append(h("li", {
      class: "signal",
      "data-signal": name,
      title: `${SIGNALS[name]} \u2014 rank ${rank || "not ranked"}${score}`,
      text: name,
    }));
  }

  return h("li", { class: compact ? "result compact" : "result", "data-id": id },
    link,
    h("p", { class: "artist", text: obj.artist || "Unknown artist" }),
    h("p", { class: "date", text: obj.date || (obj.year !== undefined ? String(obj.year) : "Undated") }),
    signals,
    reactionButtons(id, title));
}

function placeholderContent(obj, caption) {
  return h("span", { class: "placeholder-text", "aria-hidden": "true" },
    h("span", { class: "placeholder-title", text: objectTitle(obj) }),
    h("span", { class: "placeholder-caption", text: caption }));
}

function reactionButtons(id, title) {
  const make = (kind, label) => h("button", {
    type: "button",
    class: kind,
    "data-object-id": id,
    "aria-pressed": String(kind === "like" ? state.likes.has(id) : state.dislikes.has(id)),
    title: `${label} ${quote(title)}`,
  }, icon(kind), h("span", { class: "visually-hidden", text: `${label} ${quote(title)}` }));
  return h("div", { class: "reactions" }, make("like", "Like"), make("dislike", "Dislike"));
}

function refreshReactions(id) {
  const sel = `button[data-object-id="${escapeSelector(id)}"]`;
  for (const button of $$(`${sel}.like`)) button.setAttribute("aria-pressed", String(state.likes.has(id)));
  for (const button of $$(`${sel}.dislike`)) button.setAttribute("aria-pressed", String(state.dislikes.has(id)));
}

function refreshAllReactions() {
  for (const button of $$("button.like[data-object-id], button.dislike[data-object-id]")) {
    const id = button.dataset.objectId;
    const on = button.classList.contains("like") ? state.likes.has(id) : state.dislikes.has(id);
    button.setAttribute("aria-pressed", String(on));
  }
}

function toggleReaction(id, kind) {
  const title = objectTitle(objectCache.get(id) || { id });
  let message;
  if (kind === "like") {
    if (state.likes.has(id)) { state.likes.delete(id); message = `Removed your like of ${quote(title)}.`; }
    else { state.likes.add(id); state.dislikes.delete(id); message = `Liked ${quote(title)}.`; }
  } else if (state.dislikes.has(id)) { state.dislikes.delete(id); message = `Removed your dislike of ${quote(title)}.`; }
  else { state.dislikes.add(id); state.likes.delete(id); message = `Disliked ${quote(title)}.`; }
  refreshReactions(id);
  updateSessionUI();
  writeHash();
  announce(message);
}

function updateSessionUI() {
  const likes = state.likes.size;
  const dislikes = state.dislikes.size;
  $("#more-like-likes").disabled = likes === 0;
  $("#clear-likes").disabled = likes === 0 && dislikes === 0;
  const parts = [];
  if (likes || dislikes) {
    parts.push(`${likes} liked`, `${dislikes} disliked`);
    if (seen.size) parts.push(`${seen.size} seen`);
    $("#session-summary").textContent = parts.join(" \u00b7 ");
  } else {
    $("#session-summary").textContent = "Like objects to get recommendations.";
  }
}

// ---------------------------------------------------------------------------------------------
// Object panel

const dialog = $("#object");
const dialogBody = $("#object-body");

function openObject(id, { opener = null } = {}) {
  if (!id) return;
  if (!dialog.open) {
    returnFocus = { element: opener || (document.activeElement !== document.body ? document.activeElement : null), id };
  }
  state.openId = id;
  dialog.dataset.id = id;
  writeHash();
  markSeen([id]);

  const seq = ++objectSeq;
  if (objectController) objectController.abort();
  objectController = new AbortController();
  const signal = objectController.signal;
  const current = () => seq === objectSeq && state.openId === id;

  const cached = objectCache.get(id);
  const parts = buildPanel(id, cached);
  dialogBody.replaceChildren(parts.root);
  if (!dialog.open) {
    try { dialog.showModal(); } catch (_) { dialog.setAttribute("open", ""); }
  }
  dialog.querySelector(".panel").scrollTop = 0;
  parts.heading.focus({ preventScroll: true });

  api(`/api/objects/${encodeURIComponent(id)}`, { signal })
    .then((data) => {
      if (!current()) return;
      const obj = data.object || { id };
      cacheObject(obj);
      fillObject(parts, objectCache.get(id) || obj, data);
    })
    .catch((err) => {
      if (!current() || err.name === "AbortError") return;
      parts.loadError.textContent = `This object could not be loaded: ${err.message}`;
      parts.loadError.hidden = false;
      if (!cached) parts.meta.replaceChildren();
    });

  api(`/api/objects/${encodeURIComponent(id)}/similar?k=${SIMILAR_K}`, { signal })
    .then((data) => {
      if (!current()) return;
      const hits = (Array.isArray(data.hits) ? data.hits : []).filter((hit) => hit && hit.object && hit.object.id !== id);
      const tiles = hits.map((hit) => renderTile(hit, { compact: true })).filter(Boolean);
      parts.similar.replaceChildren(...tiles);
      parts.similar.setAttribute("aria-busy", "false");
      markSeen(tiles.map((tile) => tile.dataset.id));
      if (!tiles.length) parts.similarNote.textContent = "No similar objects found.";
      else parts.similarNote.textContent = "";
    })
    .catch((err) => {
      if (!current() || err.name === "AbortError") return;
      parts.similar.setAttribute("aria-busy", "false");
      parts.similarNote.textContent = `Similar objects are unavailable: ${err.message}`;
      parts.similarNote.classList.add("is-error");
    });

  api(`/api/objects/${encodeURIComponent(id)}/suggestions?k=${SUGGESTIONS_K}`, { signal })
    .then((data) => {
      if (!current()) return;
      fillSuggestions(parts, id, data);
    })
    .catch((err) => {
      if (!current() || err.name === "AbortError") return;
      parts.suggestions.setAttribute("aria-busy", "false");
      parts.suggestions.replaceChildren();
      parts.suggestionsNote.textContent = `Tag suggestions are unavailable: ${err.message}`;
      parts.suggestionsNote.classList.add("is-error");
    });
}

function closeObject({ restoreFocus = true } = {}) {
  if (dialog.open) {
    dialog.dataset.restoreFocus = restoreFocus ? "1" : "0";
    dialog.close();
  } else {
    onDialogClosed(restoreFocus);
  }
}

function onDialogClosed(restoreFocus = true) {
  objectSeq++;
  if (objectController) objectController.abort();
  objectController = null;
  const closedId = returnFocus && returnFocus.id;
  const target = returnFocus && returnFocus.element;
  returnFocus = null;
  state.openId = null;
  delete dialog.dataset.id;
  dialogBody.replaceChildren();
  writeHash();
  if (!restoreFocus) return;
  let focusTarget = target && target.isConnected && !dialog.contains(target) ? target : null;
  if (!focusTarget && closedId) {
    focusTarget = $(`#results .result[data-id="${escapeSelector(closedId)}"] .open`);
  }
  if (!focusTarget) focusTarget = queryInput;
  focusTarget.focus();
}

function buildPanel(id, obj) {
  const heading = h("h2", { id: "object-title", class: "object-title", tabindex: "-1", text: obj ? objectTitle(obj) : "Loading\u2026" });
  const byline = h("p", { class: "object-byline" });
  const figure = h("figure", { class: "object-figure" });
  const meta = h("div", { class: "object-meta" }, h("p", { class: "muted", text: "Loading details\u2026" }));
  const loadError = h("p", { class: "inline-error", role: "alert", hidden: true });
  const reactions = reactionButtons(id, obj ? objectTitle(obj) : id);
  reactions.classList.add("reactions-large");

  const suggestionsNote = h("p", { class: "section-note muted", text: "Asking the tagger\u2026" });
  const suggestions = h("ul", { class: "suggestions", "aria-busy": "true" });
  const modelVersion = h("p", { class: "model-version muted" });
  const similarNote = h("p", { class: "section-note muted", text: "Looking for similar objects\u2026" });
  const similar = h("ul", { class: "similar grid grid-compact", "aria-busy": "true" });

  const root = h("article", { class: "object" },
    h("div", { class: "object-top" },
      figure,
      h("div", { class: "object-info" },
        heading, byline, loadError, reactions, meta)),
    h("section", { class: "object-section", "aria-labelledby": "suggestions-heading" },
      h("h3", { id: "suggestions-heading", text: "Tag suggestions" }),
      modelVersion, suggestionsNote, suggestions),
    h("section", { class: "object-section", "aria-labelledby": "similar-heading" },
      h("h3", { id: "similar-heading", text: "Similar objects" }),
      similarNote, similar));

  const parts = { root, heading, byline, figure, meta, loadError, suggestions, suggestionsNote, modelVersion, similar, similarNote };
  if (obj) fillObject(parts, obj, null);
  else figure.append(h("div", { class: "frame placeholder large" }, h("span", { class: "placeholder-text", text: "Loading\u2026" })));
  $("#object-kicker").textContent = `Object ${id}`;
  return parts;
}

function chipList(items, className) {
  return h("ul", { class: `chips ${className || ""}` }, items.map((item) =>
    h("li", { class: "chip" }, h("span", { text: item.label }), item.extra ? h("span", { class: "chip-extra", text: item.extra }) : null)));
}

function fillObject(parts, obj, details) {
  const title = objectTitle(obj);
  parts.heading.textContent = title;
  parts.byline.textContent = [obj.artist, obj.date || (obj.year !== undefined ? String(obj.year) : "")].filter(Boolean).join(", ");

  parts.figure.replaceChildren();
  if (obj.image_url) {
    const img = h("img", { class: "object-image", src: obj.image_url, alt: title, decoding: "async" });
    img.addEventListener("error", () => {
      img.replaceWith(h("div", { class: "frame placeholder large" }, placeholderContent(obj, "Image not available")));
    }, { once: true });
    parts.figure.append(img);
  } else {
    parts.figure.append(h("div", { class: "frame placeholder large" }, placeholderContent(obj, "No image")));
  }

  const rows = [
    ["Artist", obj.artist],
    ["Date", obj.date || (obj.year !== undefined ? String(obj.year) : "")],
    ["Medium", obj.medium],
    ["Classification", obj.classification],
    ["Movements", Array.isArray(obj.movements) ? obj.movements.join(", ") : ""],
    ["Identifier", obj.id],
  ];
  const extra = obj.extra && typeof obj.extra === "object" ? Object.entries(obj.extra) : [];
  for (const [key, value] of extra) {
    if (value) rows.push([key.replace(/_/g, " ").replace(/^./, (c) => c.toUpperCase()), String(value)]);
  }
  const dl = h("dl", { class: "facts" });
  for (const [label, value] of rows) {
    if (!value) continue;
    dl.append(h("div", { class: "fact" }, h("dt", { text: label }), h("dd", { text: value })));
  }

  const children = [dl];
  if (obj.description) children.push(h("p", { class: "description", text: obj.description }));

  const subjects = Array.isArray(obj.subjects) ? obj.subjects.filter(Boolean) : [];
  children.push(h("h4", { text: "Curators\u2019 tags" }));
  children.push(subjects.length
    ? chipList(subjects.map((label) => ({ label })), "subjects")
    : h("p", { class: "muted", text: "None yet." }));

  if (details) {
    const machineTags = Array.isArray(details.machine_tags) ? details.machine_tags.filter((tag) => tag && tag.label) : [];
    children.push(h("h4", { text: "Machine tags" }));
    if (machineTags.length) {
      children.push(chipList(machineTags.map((tag) => ({ label: tag.label, extra: percent(tag.score) })), "machine-tags"));
      if (details.machine_tags_version) {
        children.push(h("p", { class: "muted small", text: `Tagger version ${details.machine_tags_version}` }));
      }
    } else {
      children.push(h("p", { class: "muted", text: "None indexed." }));
    }
  }
  parts.meta.replaceChildren(...children);
}

function fillSuggestions(parts, id, data) {
  const list = Array.isArray(data.suggestions) ? data.suggestions : [];
  const objectId = data.object_id || id;
  parts.suggestions.setAttribute("aria-busy", "false");
  parts.modelVersion.textContent = data.model_version ? `Model ${data.model_version}` : "";
  parts.suggestionsNote.textContent = list.length
    ? "Suggested by the tagger. Accept or reject each to teach it; open \u201cWhy?\u201d to see the evidence."
    : "The tagger has no suggestions for this object.";
  parts.suggestions.replaceChildren(...list.map((suggestion) => renderSuggestion(objectId, suggestion)).filter(Boolean));
}

function renderSuggestion(objectId, suggestion) {
  const tag = suggestion.tag || {};
  const label = tag.label || tag.id;
  if (!label) return null;
  const kind = stripEnum(suggestion.kind, "SUGGESTION_KIND_");
  const score = Number(suggestion.score) || 0;

  const head = h("div", { class: "suggestion-head" },
    h("span", { class: "tag-label", text: label }),
    h("span", { class: "score", text: percent(score), title: `Calibrated score ${fixed(score, 3)}` }),
    kind === "MIMIC" || kind === "RECOMMEND"
      ? h("span", {
        class: `badge kind kind-${kind.toLowerCase()}`,
        text: kind,
        title: kind === "MIMIC" ? "The kind of tag curators already give such objects" : "Suggested on semantic evidence",
      })
      : null,
    suggestion.already_present ? h("span", { class: "badge present", text: "already present" }) : null);

  const bar = h("div", { class: "score-bar", "aria-hidden": "true" }, h("span"));
  bar.firstChild.style.width = percent(score);

  const review = suggestion.review_required
    ? h("p", { class: "review-required" },
      h("strong", { class: "badge warn", text: "REVIEW REQUIRED" }),
      suggestion.review_reason ? h("span", { class: "review-reason", text: ` ${suggestion.review_reason}` }) : null)
    : null;

  const result = h("span", { class: "feedback-result", role: "status" });
  const accept = h("button", { type: "button", class: "button small accept", "aria-pressed": "false", text: "Accept" });
  const reject = h("button", { type: "button", class: "button small reject", "aria-pressed": "false", text: "Reject" });
  const item = h("li", { class: "suggestion", "data-tag": label },
    head, bar, review,
    renderExplanation(suggestion.explanation || {}),
    h("div", { class: "feedback", role: "group", "aria-label": `Feedback on ${quote(label)}` }, accept, reject, result));
  if (suggestion.review_required) item.classList.add("needs-review");

  const pending = {}; // action -> feedback id of a failed attempt (resent as is: the server de-duplicates)
  const send = async (action) => {
    const feedbackId = pending[action] || uuid();
    pending[action] = feedbackId;
    accept.disabled = true;
    reject.disabled = true;
    result.classList.remove("is-error", "is-ok");
    result.textContent = "Sending\u2026";
    try {
      const answer = await api("/api/feedback", {
        method: "POST",
        body: {
          object_id: objectId,
          tag: tag.id || label,
          action: action === "accept" ? "FEEDBACK_ACTION_ACCEPT" : "FEEDBACK_ACTION_REJECT",
          feedback_id: feedbackId,
        },
      });
      delete pending[action];
      const done = action === "accept" ? "accepted" : "rejected";
      result.textContent = answer.created === false ? `${done} (already recorded)` : done;
      result.classList.add("is-ok");
      accept.setAttribute("aria-pressed", String(action === "accept"));
      reject.setAttribute("aria-pressed", String(action === "reject"));
      item.dataset.feedback = done;
    } catch (err) {
      result.textContent = err.message || UNREACHABLE;
      result.classList.add("is-error");
    } finally {
      accept.disabled = false;
      reject.disabled = false;
    }
  };
  accept.addEventListener("click", () => send("accept"));
  reject.addEventListener("click", () => send("reject"));
  return item;
}

function renderExplanation(explanation) {
  const body = [];
  if (explanation.summary) body.push(h("p", { class: "explanation-summary", text: explanation.summary }));

  const components = Array.isArray(explanation.components) ? explanation.components : [];
  if (components.length) {
    const table = h("table", { class: "evidence" },
      h("caption", { text: "Evidence per component" }),
      h("thead", {}, h("tr", {},
        h("th", { scope: "col", text: "Component" }),
        h("th", { scope: "col", class: "num", text: "Score" }),
        h("th", { scope: "col", class: "num", text: "Rank" }),
        h("th", { scope: "col", class: "num", text: "Contribution" }))),
      h("tbody", {}, components.map((c) => h("tr", {},
        h("th", { scope: "row", text: c.component || "?" }),
        h("td", { class: "num", text: fixed(c.score, 3) }),
        h("td", { class: "num", text: Number(c.rank) ? String(c.rank) : "\u2014" }),
        h("td", { class: "num", text: signed(c.contribution, 3) })))));
    body.push(h("div", { class: "table-scroll" }, table));
  }

  const similar = Array.isArray(explanation.similar_objects) ? explanation.similar_objects.filter((o) => o && o.id) : [];
  if (similar.length) {
    body.push(h("h5", { text: "Similar objects with this tag" }));
    body.push(h("ul", { class: "evidence-list similar-tagged" }, similar.map((o) => h("li", {},
      h("a", { class: "open-object", href: buildHash(state, { openId: o.id }), "data-id": o.id, text: o.title || o.id }),
      h("span", { class: "muted", text: ` ${o.id} \u00b7 similarity ${fixed(o.similarity)}` })))));
  }

  const nextTo = Array.isArray(explanation.catalogue_neighbours) ? explanation.catalogue_neighbours.filter((o) => o && o.id) : [];
  if (nextTo.length) {
    body.push(h("h5", { text: "Catalogued next to this object, with this tag" }));
    body.push(h("ul", { class: "evidence-list catalogue-neighbours" }, nextTo.map((o) => h("li", {},
      h("a", { class: "open-object", href: buildHash(state, { openId: o.id }), "data-id": o.id, text: o.title || o.id }),
      h("span", { class: "muted", text: ` ${o.id} \u00b7 ${Number(o.gap) || 0} number(s) away` })))));
  }

  const matched = Array.isArray(explanation.matched_text) ? explanation.matched_text.filter((m) => m && (m.text || m.field)) : [];
  if (matched.length) {
    body.push(h("h5", { text: "Matched words" }));
    body.push(h("ul", { class: "evidence-list matched-text" }, matched.map((m) => h("li", {},
      h("span", { class: "matched-field", text: `${m.field || "text"}: ` }),
      h("span", { text: m.text || "" }),
      m.similarity !== undefined ? h("span", { class: "muted", text: ` (${fixed(m.similarity)})` }) : null))));
  }

  const paths = Array.isArray(explanation.tag_paths) ? explanation.tag_paths.filter(Boolean) : [];
  if (paths.length) {
    body.push(h("h5", { text: "Tag paths" }));
    body.push(h("ul", { class: "evidence-list tag-paths" }, paths.map((path) => h("li", { text: path }))));
  }

  if (!body.length) body.push(h("p", { class: "muted", text: "No explanation was given." }));
  return h("details", { class: "explanation" }, h("summary", { text: "Why?" }), h("div", { class: "explanation-body" }, body));
}

// ---------------------------------------------------------------------------------------------
// Collection / backend info (footer; best effort)

async function loadInfo() {
  try {
    const info = await api("/api/info");
    const parts = [];
    const collection = info.collection;
    if (collection && collection.objects !== undefined) {
      parts.push(`${formatCount(collection.objects)} objects` +
        (collection.objects_with_image !== undefined ? `, ${formatCount(collection.objects_with_image)} with images` : ""));
      $("#collection-info").textContent = `Explore ${formatCount(collection.objects)} objects: search, keep what you like, discover more.`;
    }
    const tagger = info.tagger;
    if (tagger && tagger.model_version) parts.push(`tagger ${tagger.model_version}`);
    const backends = info.backends || {};
    const down = Object.entries(backends).filter(([, value]) => value && value !== "SERVING").map(([name]) => name);
    if (down.length) parts.push(`unavailable now: ${down.join(", ")}`);
    if (parts.length) $("#backend-info").textContent = `Vitrine explorer \u00b7 ${parts.join(" \u00b7 ")}`;
  } catch (_) { /* the footer is decoration */ }
}

// ---------------------------------------------------------------------------------------------
// Events

form.addEventListener("submit", (event) => {
  event.preventDefault();
  readForm();
  if (!state.query) {
    setStatus("Type a word or two to search the collection.");
    queryInput.focus();
    return;
  }
  runSearch({ pushHistory: true });
});

$("#clear-filters").addEventListener("click", () => {
  for (const [key, input] of Object.entries(filterInputs)) {
    if (key === "hasImage") input.checked = false;
    else input.value = "";
  }
  readForm();
  if (state.view === "search" && state.query) runSearch({ pushHistory: true });
  else writeHash();
});

$("#more-like-likes").addEventListener("click", () => {
  readForm();
  const continuing = state.view === "recommend" && recommendPages.key === viewKey("recommend");
  runRecommend({ fresh: !continuing, pushHistory: !continuing, focusResults: false });
});

$("#clear-likes").addEventListener("click", () => {
  state.likes.clear();
  state.dislikes.clear();
  refreshAllReactions();
  updateSessionUI();
  writeHash();
  announce("Your likes and dislikes are cleared.");
});

$("#diversify").addEventListener("change", (event) => {
  state.diversify = event.target.checked;
  writeHash();
});

prevButton.addEventListener("click", () => {
  if (state.view === "recommend") {
    if (recommendPages.index > 0) {
      showRecommendPage(recommendPages.index - 1, { focusResults: true });
      saveRecommendCache();
    }
    return;
  }
  if (searchPages.tokens.length > 1) {
    searchPages.tokens.pop();
    runSearch({ token: searchPages.tokens[searchPages.tokens.length - 1], resetPages: false, pushHistory: false, focusResults: true });
  }
});

nextButton.addEventListener("click", () => {
  if (state.view === "recommend") {
    if (recommendPages.index < recommendPages.pages.length - 1) {
      showRecommendPage(recommendPages.index + 1, { focusResults: true });
      saveRecommendCache();
    } else {
      runRecommend({ pushHistory: false, focusResults: true });
    }
    return;
  }
  if (searchPages.next) {
    const token = searchPages.next;
    searchPages.tokens.push(token);
    runSearch({ token, resetPages: false, pushHistory: false, focusResults: true });
  }
});

$("#error-retry").addEventListener("click", () => {
  if (retry) retry();
  else hideError();
});

$("#home-link").addEventListener("click", (event) => {
  event.preventDefault();
  state.query = "";
  state.filters = emptyFilters();
  state.view = "search";
  writeForm();
  resetResults();
  if (dialog.open) closeObject({ restoreFocus: false });
  writeHash({ push: true });
  setStatus("Type a word or two to search the collection.");
  queryInput.focus();
});

const plainClick = (event) => event.button === 0 && !event.metaKey && !event.ctrlKey && !event.shiftKey && !event.altKey;

document.addEventListener("click", (event) => {
  const target = event.target instanceof Element ? event.target : null;
  if (!target) return;

  const reaction = target.closest("button.like[data-object-id], button.dislike[data-object-id]");
  if (reaction) {
    toggleReaction(reaction.dataset.objectId, reaction.classList.contains("like") ? "like" : "dislike");
    return;
  }

  const open = target.closest("a.open[data-id], a.open-object[data-id]");
  if (open && plainClick(event)) {
    event.preventDefault();
    openObject(open.dataset.id, { opener: open });
    return;
  }

  const alternative = target.closest("a.alternative[data-action]");
  if (alternative) {
    event.preventDefault();
    if (alternative.dataset.action === "forget-seen") {
      seen.clear();
      saveSeen();
      updateSessionUI();
      runRecommend({ fresh: true, pushHistory: false });
    } else if (alternative.dataset.action === "recommend-unfiltered") {
      state.filters = emptyFilters();
      writeForm();
      runRecommend({ fresh: true, pushHistory: true });
    }
  }
});

$("#close-object").addEventListener("click", () => closeObject());

dialog.addEventListener("cancel", (event) => {
  // Escape: close through our own path so focus goes back to the tile.
  event.preventDefault();
  closeObject();
});

dialog.addEventListener("close", () => {
  const restore = dialog.dataset.restoreFocus !== "0";
  delete dialog.dataset.restoreFocus;
  onDialogClosed(restore);
});

dialog.addEventListener("click", (event) => {
  // A click on the backdrop (the dialog box itself, outside the panel) closes it.
  if (event.target === dialog) closeObject();
});

window.addEventListener("hashchange", onNavigate);
window.addEventListener("popstate", onNavigate);

// ---------------------------------------------------------------------------------------------
// Start

updateSessionUI();
applyHash(location.hash, { initial: true });
loadInfo();
