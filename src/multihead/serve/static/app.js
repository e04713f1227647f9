// The multihead playground: pick a model, chat or run its task, watch the answer stream in, and open the
// attention view (multihead.inspect's AttentionView, rendered by the server) of what the model read and wrote.
// Plain script, no dependencies, nothing loaded from the network.
(function () {
  "use strict";

  const $ = (id) => document.getElementById(id);
  const ui = {
    model: $("model"), kind: $("kind"), log: $("log"), composer: $("composer"), prompt: $("prompt"),
    context: $("context"),
    send: $("send"), stop: $("stop"), clear: $("clear"), status: $("status"), showAttention: $("show-attention"),
    frame: $("attention-frame"), note: $("attention-note"), keyButton: $("key-button"), keyDialog: $("key-dialog"),
    keyForm: $("key-form"), keyInput: $("key-input"), keyCancel: $("key-cancel"),
  };
  const KEY = "multihead-api-key";
  const PLACEHOLDERS = {
    generation: "Write a message; Enter sends, Shift+Enter adds a line",
    translation: "A sentence to translate; Enter runs",
    summarization: "An article to summarise; Enter runs",
    classification: "A text to classify; Enter runs",
    embedding: "A text to embed; Enter runs",
    "question-answering": "A question about the context above; Enter runs",
  };
  const state = { models: [], conversation: [], controller: null, last: null };

  function currentModel() { return state.models.find((m) => m.id === ui.model.value) || null; }

  function headers() {
    const result = { "Content-Type": "application/json" };
    const key = sessionStorage.getItem(KEY);
    if (key) result.Authorization = "Bearer " + key;
    return result;
  }

  function askKey() {
    return new Promise((resolve) => {
      ui.keyInput.value = "";
      const done = (ok) => {
        ui.keyDialog.close();
        if (ok && ui.keyInput.value.trim()) sessionStorage.setItem(KEY, ui.keyInput.value.trim());
        resolve(ok);
      };
      ui.keyForm.onsubmit = (event) => { event.preventDefault(); done(true); };
      ui.keyCancel.onclick = () => done(false);
      ui.keyDialog.showModal();
      ui.keyInput.focus();
    });
  }

  async function call(path, body, signal) {
    for (let attempt = 0; attempt < 3; attempt++) {
      const response = await fetch(path, body === undefined ? { headers: headers(), signal } :
        { method: "POST", headers: headers(), body: JSON.stringify(body), signal });
      if (response.status !== 401) return response;
      if (!(await askKey())) break;
    }
    throw new Error("this server needs an API key");
  }

  async function failure(response) {
    try {
      const body = await response.json();
      return new Error(body.error ? body.error.message : response.statusText);
    } catch (error) {
      return new Error(response.status + " " + response.statusText);
    }
  }

  // Server-sent events of a fetch response: yields each event's parsed JSON until [DONE].
  async function* events(response) {
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += decoder.decode(value, { stream: true });
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const data = block.split("\n").filter((l) => l.startsWith("data:")).map((l) => l.slice(5).trim()).join("");
        if (!data) continue;
        if (data === "[DONE]") return;
        const parsed = JSON.parse(data);
        if (parsed.error) throw new Error(parsed.error.message);
        yield parsed;
      }
    }
  }

  function bubble(role, text) {
    const item = document.createElement("div");
    item.className = "message " + role;
    const who = document.createElement("div");
    who.className = "who";
    who.textContent = role;
    const body = document.createElement("div");
    body.className = "text";
    body.textContent = text || "";
    item.append(who, body);
    ui.log.appendChild(item);
    ui.log.scrollTop = ui.log.scrollHeight;
    return body;
  }

  function setBusy(busy) {
    ui.send.disabled = busy;
    ui.stop.disabled = !busy;
    ui.model.disabled = busy;
  }

  function say(text) { ui.status.textContent = text; }

  function number(id) {
    const value = $(id).value;
    return value === "" ? undefined : Number(value);
  }

  async function loadModels() {
    try {
      const response = await call("/v1/models");
      if (!response.ok) throw await failure(response);
      state.models = (await response.json()).data;
    } catch (error) {
      say("could not list the models: " + error.message);
      return;
    }
    ui.model.innerHTML = "";
    for (const model of state.models) ui.model.add(new Option(model.id + " (" + model.kind + ")", model.id));
    chooseModel();
  }

  function chooseModel() {
    const model = currentModel();
    const kind = model ? model.kind : "";
    ui.kind.textContent = kind;
    ui.prompt.placeholder = PLACEHOLDERS[kind] || "";
    for (const field of document.querySelectorAll("[data-for]")) {
      field.hidden = !field.dataset.for.split(" ").includes(kind);
    }
    ui.send.textContent = kind === "generation" ? "Send" : "Run";
    ui.clear.hidden = kind !== "generation";
    ui.context.hidden = kind !== "question-answering";
    reset();
  }

  function reset() {
    state.conversation = [];
    state.last = null;
    ui.log.innerHTML = "";
    ui.showAttention.disabled = true;
    ui.frame.removeAttribute("srcdoc");
    say("");
  }

  async function run() {
    const model = currentModel();
    const text = ui.prompt.value.trim();
    if (!model || !text || state.controller) return;
    ui.prompt.value = "";
    bubble("user", text);
    const output = bubble("assistant", "");
    output.classList.add("streaming");
    state.controller = new AbortController();
    setBusy(true);
    const started = performance.now();
    try {
      if (model.kind === "generation") await chat(model, text, output);
      else if (model.kind === "translation" || model.kind === "summarization") await rewrite(model, text, output);
      else if (model.kind === "classification") await classify(model, text, output);
      else if (model.kind === "question-answering") await answer(model, text, output);
      else await embed(model, text, output);
      ui.showAttention.disabled = !state.last;
      if (!ui.status.textContent) say("done in " + ((performance.now() - started) / 1000).toFixed(2) + " s");
    } catch (error) {
      if (error.name === "AbortError") { output.append(" [stopped]"); say("stopped"); }
      else { output.classList.add("error"); output.textContent = error.message; say(error.message); }
    } finally {
      output.classList.remove("streaming");
      state.controller = null;
      setBusy(false);
      ui.prompt.focus();
    }
  }

  async function chat(model, text, output) {
    const system = $("system").value.trim();
    state.conversation.push({ role: "user", content: text });
    const messages = (system ? [{ role: "system", content: system }] : []).concat(state.conversation);
    const body = { model: model.id, messages, stream: true, stream_options: { include_usage: true },
                   temperature: number("temperature"), max_tokens: number("max-tokens"), top_p: number("top-p"),
                   seed: number("seed") };
    let answer = "", id = null, usage = null, first = null;
    const started = performance.now();
    try {
      const response = await call("/v1/chat/completions", body, state.controller.signal);
      if (!response.ok) throw await failure(response);
      say("");
      for await (const chunk of events(response)) {
        id = chunk.id;
        if (chunk.usage) usage = chunk.usage;
        for (const choice of chunk.choices) {
          const piece = (choice.delta && choice.delta.content) || "";
          if (piece && first === null) first = performance.now();
          answer += piece;
          output.textContent = answer;
        }
        ui.log.scrollTop = ui.log.scrollHeight;
      }
    } catch (error) {
      state.conversation.pop();  // a turn without its answer is not part of the conversation
      throw error;
    }
    state.conversation.push({ role: "assistant", content: answer });
    state.last = { model: model.id, completion_id: id };
    if (usage) {
      const seconds = (performance.now() - started) / 1000;
      say(usage.completion_tokens + " tokens in " + seconds.toFixed(2) + " s (first after " +
          (((first || performance.now()) - started) / 1000).toFixed(2) + " s); prompt " + usage.prompt_tokens +
          " tokens");
    }
  }

  async function rewrite(model, text, output) {
    const path = model.kind === "translation" ? "/v1/translate" : "/v1/summarize";
    const body = { model: model.id, input: text, stream: true };
    if (number("max-tokens") !== undefined) body.max_tokens = number("max-tokens");
    if (number("beams") !== undefined) body.num_beams = number("beams");
    let response = await call(path, body, state.controller.signal);
    if (response.status === 422) {  // an extractive summariser takes no decoding options
      response = await call(path, { model: model.id, input: text, stream: true }, state.controller.signal);
    }
    if (!response.ok) throw await failure(response);
    let answer = "";
    for await (const update of events(response)) { answer = update.text; output.textContent = answer; }
    state.last = { model: model.id, input: text, output: answer };
  }

  async function classify(model, text, output) {
    const response = await call("/v1/classify", { model: model.id, input: text }, state.controller.signal);
    if (!response.ok) throw await failure(response);
    const result = (await response.json()).data[0];
    output.textContent = "";
    for (const [label, probability] of Object.entries(result.probabilities)) {
      const row = document.createElement("div");
      row.className = "bar-row";
      const name = document.createElement("span");
      name.textContent = label;
      const bar = document.createElement("span");
      bar.className = "bar";
      bar.style.width = Math.max(1, Math.round(probability * 100)) + "%";
      const value = document.createElement("span");
      value.textContent = probability.toFixed(3);
      row.append(name, bar, value);
      output.appendChild(row);
    }
    state.last = { model: model.id, input: text };
  }

  async function answer(model, question, output) {
    const context = ui.context.value.trim();
    if (!context) throw new Error("write the context (the passage that holds the answer) first");
    const body = { model: model.id, question, context };
    const response = await call("/v1/answer", body, state.controller.signal);
    if (!response.ok) throw await failure(response);
    const result = (await response.json()).data[0];
    output.textContent = result.text ? result.text + "  (characters " + result.start + "-" + result.end + ")" :
      "(no answer)";
    state.last = { model: model.id, input: question + "\n" + context };
  }

  async function embed(model, text, output) {
    const body = { model: model.id, input: text, encoding_format: "float" };
    const response = await call("/v1/embeddings", body, state.controller.signal);
    if (!response.ok) throw await failure(response);
    const vector = (await response.json()).data[0].embedding;
    const norm = Math.sqrt(vector.reduce((sum, v) => sum + v * v, 0));
    output.textContent = vector.length + " dimensions, length " + norm.toFixed(3) + ": [" +
      vector.slice(0, 8).map((v) => v.toFixed(4)).join(", ") + ", ...]";
    state.last = { model: model.id, input: text };
  }

  async function showAttention() {
    if (!state.last) return;
    ui.showAttention.disabled = true;
    say("capturing attention...");
    try {
      const response = await call("/v1/attention", { ...state.last, format: "html" });
      if (!response.ok) throw await failure(response);
      ui.frame.srcdoc = await response.text();
      say("attention of the last answer");
      ui.frame.focus();
    } catch (error) {
      say("attention: " + error.message);
    } finally {
      ui.showAttention.disabled = false;
    }
  }

  ui.model.addEventListener("change", chooseModel);
  ui.composer.addEventListener("submit", (event) => { event.preventDefault(); run(); });
  ui.prompt.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) { event.preventDefault(); run(); }
  });
  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && state.controller) state.controller.abort();
  });
  ui.stop.addEventListener("click", () => { if (state.controller) state.controller.abort(); });
  ui.clear.addEventListener("click", reset);
  ui.showAttention.addEventListener("click", showAttention);
  ui.keyButton.addEventListener("click", async () => { if (await askKey()) loadModels(); });
  loadModels();
})();
