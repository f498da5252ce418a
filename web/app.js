// carteiro: progressive enhancement of the message form.
// Without JavaScript the form is a plain POST to /api. With it, the form is
// sent as JSON to /api/messages and the delivery status is followed.
// Server text is only ever rendered with textContent.
(function () {
  "use strict";

  var ENDPOINT = "/api/messages";
  var POLL_INTERVAL_MS = 1000;
  var POLL_LIMIT_MS = 2 * 60 * 1000;
  var REQUEST_TIMEOUT_MS = 20000;

  var FIELDS = {
    assunto: {
      max: 100,
      // any control character (C0, DEL, C1), line breaks included, and the
      // Unicode line and paragraph separators (as the api)
      control: /[\u0000-\u001F\u007F-\u009F\u2028\u2029]/,
      messages: {
        required: "Informe o assunto.",
        blank: "O assunto não pode ter apenas espaços.",
        too_long: "O assunto deve ter no máximo 100 caracteres.",
        invalid_utf8: "O assunto contém caracteres inválidos.",
        control_chars: "O assunto não pode ter quebras de linha nem caracteres de controle."
      }
    },
    mensagem: {
      max: 250,
      // control characters except tab, line feed and carriage return, and
      // the Unicode line and paragraph separators (as the api)
      control: /[\u0000-\u0008\u000B\u000C\u000E-\u001F\u007F-\u009F\u2028\u2029]/,
      messages: {
        required: "Escreva a mensagem.",
        blank: "A mensagem não pode ter apenas espaços.",
        too_long: "A mensagem deve ter no máximo 250 caracteres.",
        invalid_utf8: "A mensagem contém caracteres inválidos.",
        control_chars: "A mensagem contém caracteres de controle não permitidos."
      }
    }
  };

  var STATUS_LABELS = {
    queued: "na fila",
    sending: "enviando",
    sent: "enviada",
    failed: "falhou, nova tentativa em breve",
    dead: "não enviada"
  };
  var FINAL_STATUSES = { sent: true, dead: true };
  var FAILURE_LABELS = {
    temporary: "falha temporária",
    permanent: "falha permanente"
  };

  var GENERAL_ERRORS = {
    400: "Não foi possível enviar: os dados não foram aceitos. Revise os campos e tente novamente.",
    403: "O envio foi bloqueado por segurança. Recarregue a página e tente novamente.",
    413: "A mensagem é grande demais para ser enviada.",
    409: "Este envio ainda está sendo processado. Aguarde um instante e envie de novo: a mensagem não será duplicada.",
    415: "Formato de envio não aceito. Recarregue a página e tente novamente.",
    422: "Este envio já foi usado para outra mensagem. Envie de novo.",
    429: "Muitos envios em pouco tempo.",
    503: "O serviço está temporariamente indisponível.",
    other: "Não foi possível enviar a mensagem. Tente novamente em instantes.",
    network: "Sem resposta do servidor. Verifique sua conexão e tente novamente."
  };

  var form = document.getElementById("formulario");
  var button = document.getElementById("enviar");
  var statusText = document.getElementById("status-texto");
  var result = document.getElementById("resultado");
  var messageId = document.getElementById("message-id");
  var messageStatus = document.getElementById("message-status");
  var messageFailure = document.getElementById("message-failure");
  var traceRow = document.getElementById("trace");
  var traceId = document.getElementById("trace-id");
  if (!form || !button || !statusText) {
    return;
  }

  var busy = false;
  var pollGeneration = 0;

  // Unicode characters (code points), a CRLF line break counted as one:
  // what the api counts. Not value.length (UTF-16 code units, as maxlength
  // counts), where an emoji outside the BMP counts twice.
  function charCount(value) {
    return [...value.replace(/\r\n/g, "\n")].length;
  }

  function field(name) {
    return document.getElementById(name);
  }

  function setFieldError(name, text) {
    var input = field(name);
    var error = document.getElementById(name + "-erro");
    if (error) {
      error.textContent = text || "";
    }
    if (input) {
      if (text) {
        input.setAttribute("aria-invalid", "true");
      } else {
        input.removeAttribute("aria-invalid");
      }
    }
  }

  function clearFieldErrors() {
    Object.keys(FIELDS).forEach(function (name) {
      setFieldError(name, "");
    });
  }

  function focusFirstInvalid() {
    var names = Object.keys(FIELDS);
    for (var i = 0; i < names.length; i++) {
      var input = field(names[i]);
      if (input && input.getAttribute("aria-invalid") === "true") {
        input.focus();
        return;
      }
    }
  }

  function setStatus(text, kind) {
    statusText.textContent = text || "";
    statusText.setAttribute("data-kind", kind || "");
  }

  // updateCounter shows how many characters a field holds against its
  // limit, and reports whether it is over.
  function updateCounter(name) {
    var input = field(name);
    var counter = document.getElementById(name + "-contador");
    var over = false;
    if (input) {
      var count = charCount(input.value);
      over = count > FIELDS[name].max;
      if (counter) {
        counter.textContent = "(" + count + "/" + FIELDS[name].max + ")";
        if (over) {
          counter.setAttribute("data-over", "true");
        } else {
          counter.removeAttribute("data-over");
        }
      }
    }
    return over;
  }

  // Client-side checks, same rules as the API. Returns {name: code}.
  function validate(values) {
    var codes = {};
    Object.keys(FIELDS).forEach(function (name) {
      var value = values[name];
      var rules = FIELDS[name];
      if (value === "") {
        codes[name] = "required";
      } else if (value.trim() === "") {
        codes[name] = "blank";
      } else if (charCount(value) > rules.max) {
        codes[name] = "too_long";
      } else if (rules.control.test(value)) {
        codes[name] = "control_chars";
      }
    });
    return codes;
  }

  function showFieldErrors(codes, texts) {
    var shown = false;
    Object.keys(FIELDS).forEach(function (name) {
      var code = codes && codes[name];
      var text = code && FIELDS[name].messages[code];
      if (!text && texts && typeof texts[name] === "string") {
        text = texts[name];
      }
      if (!text && code) {
        text = "Valor inválido.";
      }
      setFieldError(name, text || "");
      if (text) {
        shown = true;
      }
    });
    return shown;
  }

  function retryAfterText(response) {
    var value = response.headers.get("Retry-After");
    if (value && /^\d+$/.test(value.trim())) {
      var seconds = parseInt(value, 10);
      if (seconds > 0 && seconds <= 3600) {
        return " Tente novamente em " + seconds + (seconds === 1 ? " segundo." : " segundos.");
      }
    }
    return " Tente novamente em instantes.";
  }

  function readJSON(response) {
    var type = response.headers.get("Content-Type") || "";
    if (type.indexOf("json") === -1) {
      return Promise.resolve(null);
    }
    return response.json().catch(function () {
      return null;
    });
  }

  function fetchWithTimeout(url, options) {
    var controller = typeof AbortController === "function" ? new AbortController() : null;
    var timer = null;
    if (controller) {
      options.signal = controller.signal;
      timer = setTimeout(function () {
        controller.abort();
      }, REQUEST_TIMEOUT_MS);
    }
    return fetch(url, options).finally(function () {
      if (timer) {
        clearTimeout(timer);
      }
    });
  }

  // Only follow status URLs on this origin.
  function sameOriginURL(candidate, id) {
    var fallback = ENDPOINT + "/" + encodeURIComponent(id);
    if (typeof candidate !== "string" || candidate === "") {
      return fallback;
    }
    try {
      var url = new URL(candidate, window.location.href);
      return url.origin === window.location.origin ? url.pathname + url.search : fallback;
    } catch (e) {
      return fallback;
    }
  }

  function showMessageStatus(data) {
    var status = data && typeof data.status === "string" ? data.status : "";
    messageStatus.setAttribute("data-status", status);
    var label = Object.prototype.hasOwnProperty.call(STATUS_LABELS, status) ? STATUS_LABELS[status] : status;
    if (messageStatus.textContent !== label) {
      messageStatus.textContent = label;
    }
    var failure = failureText(data && data.failure);
    if (messageFailure && messageFailure.textContent !== failure) {
      messageFailure.textContent = failure;
    }
  }

  // failureText describes the api's failure field ({kind, label,
  // next_attempt_at}): the kind in pt-BR and, for a temporary failure, the
  // next attempt in the visitor's local time. The relay's own reply is
  // never in the public answer.
  function failureText(failure) {
    if (!failure || typeof failure !== "object") {
      return "";
    }
    var text = FAILURE_LABELS[failure.kind] || (typeof failure.label === "string" ? failure.label : "");
    if (!text) {
      return "";
    }
    if (failure.kind === "temporary" && typeof failure.next_attempt_at === "string") {
      var next = new Date(failure.next_attempt_at);
      if (!isNaN(next.getTime())) {
        text += "; próxima tentativa às " + next.toLocaleTimeString("pt-BR");
      }
    }
    return "(" + text + ")";
  }

  // showTrace shows the trace id, linked to the trace viewer: the api's
  // trace_url when it has a Jaeger UI configured, else the page's meta tag.
  function showTrace(id, traceURL) {
    if (!traceRow || !traceId) {
      return;
    }
    traceId.textContent = "";
    if (typeof id !== "string" || id === "") {
      traceRow.hidden = true;
      return;
    }
    var base = "";
    var meta = document.querySelector('meta[name="carteiro-jaeger-url"]');
    if (meta) {
      base = (meta.getAttribute("content") || "").trim();
    }
    var candidate = typeof traceURL === "string" && traceURL !== "" ? traceURL : "";
    if (!candidate && base) {
      candidate = base.replace(/\/+$/, "") + "/trace/" + encodeURIComponent(id);
    }
    var href = "";
    if (candidate) {
      try {
        var url = new URL(candidate, window.location.href);
        if (url.protocol === "http:" || url.protocol === "https:") {
          href = url.href;
        }
      } catch (e) {
        href = "";
      }
    }
    if (href) {
      var link = document.createElement("a");
      link.href = href;
      link.target = "_blank";
      link.rel = "noopener noreferrer";
      link.textContent = id;
      traceId.appendChild(link);
    } else {
      traceId.textContent = id;
    }
    traceRow.hidden = false;
  }

  function poll(url, generation, deadline) {
    if (generation !== pollGeneration) {
      return;
    }
    if (Date.now() > deadline) {
      setStatus("A atualização automática foi encerrada. Recarregue a página para enviar outra mensagem.", "info");
      return;
    }
    fetchWithTimeout(url, {
      method: "GET",
      headers: { Accept: "application/json" },
      cache: "no-store",
      credentials: "same-origin"
    })
      .then(function (response) {
        if (generation !== pollGeneration) {
          return null;
        }
        if (response.status === 404) {
          setStatus("Mensagem não encontrada ao consultar a situação.", "error");
          return "stop";
        }
        if (!response.ok) {
          return null; // transient: try again
        }
        return readJSON(response).then(function (data) {
          if (generation !== pollGeneration || !data) {
            return null;
          }
          showMessageStatus(data);
          return FINAL_STATUSES[data.status] ? "stop" : null;
        });
      })
      .catch(function () {
        return null; // network hiccup: try again until the deadline
      })
      .then(function (outcome) {
        if (outcome !== "stop" && generation === pollGeneration) {
          setTimeout(function () {
            poll(url, generation, deadline);
          }, POLL_INTERVAL_MS);
        }
      });
  }

  function accepted(data) {
    var id = data && typeof data.id === "string" ? data.id : "";
    setStatus("Mensagem recebida! Acompanhe abaixo a situação do envio.", "success");
    messageId.textContent = id;
    showMessageStatus({ status: data && typeof data.status === "string" ? data.status : "queued" });
    showTrace(data ? data.trace_id : "", data ? data.trace_url : "");
    result.hidden = false;
    form.reset();
    Object.keys(FIELDS).forEach(updateCounter);

    if (id) {
      pollGeneration += 1;
      var generation = pollGeneration;
      var url = sameOriginURL(data.status_url, id);
      setTimeout(function () {
        poll(url, generation, Date.now() + POLL_LIMIT_MS);
      }, POLL_INTERVAL_MS);
    }
  }

  function rejected(response, data) {
    if (response.status === 400 && data && (data.codes || data.fields)) {
      if (showFieldErrors(data.codes, data.fields)) {
        setStatus("Corrija os campos indicados.", "error");
        focusFirstInvalid();
        return;
      }
    }
    var text = GENERAL_ERRORS[response.status] || GENERAL_ERRORS.other;
    if (response.status === 429 || response.status === 503) {
      text += retryAfterText(response);
    }
    setStatus(text, "error");
  }

  function finish() {
    busy = false;
    button.disabled = false;
    form.removeAttribute("aria-busy");
  }

  // One Idempotency-Key per message: a retry of the same text (after a
  // network error or a 409) reuses it, so the api never stores it twice;
  // new text, or a message already accepted, gets a new key.
  var pendingKey = null;

  function newKey() {
    if (window.crypto && typeof window.crypto.randomUUID === "function") {
      return window.crypto.randomUUID();
    }
    var bytes = new Uint8Array(16);
    window.crypto.getRandomValues(bytes);
    return Array.prototype.map.call(bytes, function (b) {
      return (b < 16 ? "0" : "") + b.toString(16);
    }).join("");
  }

  function keyFor(body) {
    if (!pendingKey || pendingKey.body !== body) {
      pendingKey = { body: body, key: newKey() };
    }
    return pendingKey.key;
  }

  function onSubmit(event) {
    event.preventDefault();
    if (busy) {
      return;
    }

    var values = {
      assunto: field("assunto").value,
      mensagem: field("mensagem").value
    };

    clearFieldErrors();
    var codes = validate(values);
    if (Object.keys(codes).length > 0) {
      showFieldErrors(codes, null);
      setStatus("Corrija os campos indicados.", "error");
      focusFirstInvalid();
      return;
    }

    busy = true;
    button.disabled = true;
    form.setAttribute("aria-busy", "true");
    setStatus("Enviando…", "info");

    var body = JSON.stringify(values);
    fetchWithTimeout(ENDPOINT, {
      method: "POST",
      headers: {
        "Content-Type": "application/json",
        Accept: "application/json",
        "Idempotency-Key": '"' + keyFor(body) + '"'
      },
      body: body,
      credentials: "same-origin"
    })
      .then(function (response) {
        return readJSON(response).then(function (data) {
          if (response.status === 202 || (response.ok && data && data.id)) {
            pendingKey = null;
            accepted(data);
          } else {
            if (response.status !== 409 && response.status < 500) {
              pendingKey = null;
            }
            rejected(response, data);
          }
        });
      })
      .catch(function () {
        setStatus(GENERAL_ERRORS.network, "error");
      })
      .then(finish, finish);
  }

  form.noValidate = true; // the checks below speak pt-BR; without JS the browser's apply
  form.addEventListener("submit", onSubmit);
  Object.keys(FIELDS).forEach(function (name) {
    var input = field(name);
    if (input) {
      // Past the limit the field says so at once (the page no longer
      // stops typing with maxlength); back under it, the error goes.
      input.addEventListener("input", function () {
        if (updateCounter(name)) {
          setFieldError(name, FIELDS[name].messages.too_long);
        } else if (input.getAttribute("aria-invalid") === "true") {
          setFieldError(name, "");
        }
      });
      updateCounter(name);
    }
  });
})();
