// The study page: consent, then one trial at a time; each answer is sent (and stored) as it is given.
// The server sends only each trial's number, kind and video URLs: nothing here knows which video is which.
"use strict";
const KEY = "speechanim-study-participant";
const $ = (id) => document.getElementById(id);
let session = null;

async function api(method, url, body) {
  const options = { method, headers: {} };
  if (body !== undefined) {
    options.headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(body);
  }
  const response = await fetch(url, options);
  const data = await response.json().catch(() => ({}));
  if (!response.ok) throw Object.assign(new Error(data.error || response.statusText), { status: response.status });
  return data;
}

function show(id) {
  for (const name of ["consent", "trial", "done"]) $(name).hidden = name !== id;
}

function next() {
  const answered = new Set(session.answered);
  const trial = session.trials.find((t) => !answered.has(t.trial));
  if (!trial) {
    localStorage.removeItem(KEY);
    show("done");
    return;
  }
  render(trial, answered.size);
}

function render(trial, done) {
  show("trial");
  const total = session.trials.length;
  const preference = trial.kind === "preference";
  $("bar").max = total;
  $("bar").value = done;
  $("count").textContent = `${done + 1} of ${total}`;
  $("part").textContent = preference ? "Part 1" : "Part 2";
  $("question").textContent = preference ? "Which video looks more natural?" : "Is this video real or fake?";
  const box = $("videos");
  box.className = preference ? "videos" : "videos single";
  box.replaceChildren();
  const videos = trial.videos.map((src, i) => {
    const figure = document.createElement("figure");
    const video = document.createElement("video");
    video.src = src;
    video.controls = true;
    video.playsInline = true;
    video.preload = "auto";
    figure.append(video);
    if (preference) {
      const caption = document.createElement("figcaption");
      caption.textContent = i === 0 ? "Left" : "Right";
      figure.append(caption);
    }
    box.append(figure);
    return video;
  });
  for (const video of videos) {  // one sound at a time
    video.addEventListener("play", () => videos.forEach((other) => other !== video && other.pause()));
  }
  const answers = preference ? [["left", "Left is more natural"], ["right", "Right is more natural"]]
    : [["real", "Real"], ["fake", "Fake"]];
  const buttons = $("buttons");
  buttons.replaceChildren();
  for (const [value, label] of answers) {
    const button = document.createElement("button");
    button.type = "button";
    button.textContent = label;
    button.dataset.answer = value;
    button.addEventListener("click", () => answer(trial, value));
    buttons.append(button);
  }
  $("status").textContent = "";
}

function setButtons(enabled) {
  for (const button of $("buttons").querySelectorAll("button")) button.disabled = !enabled;
}

async function answer(trial, value) {
  setButtons(false);
  try {
    await api("POST", "/api/answers", { participant: session.participant, trial: trial.trial, answer: value });
  } catch (error) {
    if (error.status === 410) {  // 410: the study set was rebuilt since this participant began: start afresh
      localStorage.removeItem(KEY);
      session = null;
      show("consent");
      $("start").disabled = !$("agree").checked;
      $("consent-status").textContent = `${error.message}.`;
      return;
    }
    if (error.status !== 409) {  // 409: already answered (another tab); anything else: let them retry
      $("status").textContent = `Your answer was not saved (${error.message}). Please try again.`;
      setButtons(true);
      return;
    }
  }
  session.answered.push(trial.trial);
  next();
}

async function start() {
  $("start").disabled = true;
  try {
    session = await api("POST", "/api/participants", { consent: true });
    localStorage.setItem(KEY, session.participant);
    next();
  } catch (error) {
    $("consent-status").textContent = `Could not start (${error.message}). Please reload the page.`;
  }
}

async function init() {
  $("agree").addEventListener("change", () => { $("start").disabled = !$("agree").checked; });
  $("start").addEventListener("click", start);
  const saved = localStorage.getItem(KEY);
  if (saved) {
    try {
      session = await api("GET", `/api/participants/${encodeURIComponent(saved)}`);
      next();
      return;
    } catch (error) {
      localStorage.removeItem(KEY);
    }
  }
  show("consent");
}

init();
