// Herald console: copy buttons, files read into form fields, the template preview.
// No framework and nothing from outside the binary.
"use strict";

// Copy the code of a figure.
document.querySelectorAll("figure.code button.copy").forEach(function (button) {
  button.addEventListener("click", function () {
    var text = button.parentElement.querySelector("code").textContent;
    navigator.clipboard.writeText(text).then(function () { button.textContent = "Copied"; },
      function () { button.textContent = "Select and copy by hand"; });
  });
});

// A file input fills a hidden field with the file's bytes in base64 (a .p12 certificate).
document.querySelectorAll("input[type=file][data-base64-into]").forEach(function (input) {
  input.addEventListener("change", function () {
    var target = document.getElementById(input.dataset.base64Into);
    var file = input.files[0];
    if (!file) { target.value = ""; return; }
    var reader = new FileReader();
    reader.onload = function () {
      var bytes = new Uint8Array(reader.result);
      var binary = "";
      for (var i = 0; i < bytes.length; i++) { binary += String.fromCharCode(bytes[i]); }
      target.value = btoa(binary);
    };
    reader.readAsArrayBuffer(file);
  });
});

// The template editor's live preview: rendered by the server as a template push renders it.
(function () {
  var panel = document.getElementById("preview");
  var form = document.getElementById("template");
  if (!panel || !form) { return; }
  var values = document.getElementById("preview-values");
  var timer = null;
  function field(name) {
    var el = form.elements[name];
    return el ? el.value : "";
  }
  function render() {
    var body = new URLSearchParams();
    body.set("csrf", panel.dataset.csrf);
    body.set("title", field("title"));
    body.set("content", field("content"));
    body.set("uri", field("uri"));
    body.set("values", values.value);
    fetch("/console/apps/" + encodeURIComponent(panel.dataset.app) + "/template-preview", {
      method: "POST", body: body, credentials: "same-origin",
      headers: { "X-CSRF-Token": panel.dataset.csrf }
    }).then(function (r) { return r.json(); }).then(function (answer) {
      document.getElementById("preview-title").textContent = answer.title || "";
      document.getElementById("preview-content").textContent = answer.content || "";
      var hint = answer.variables && answer.variables.length ? " (placeholders: " + answer.variables.join(", ") + ")" : "";
      document.getElementById("preview-error").textContent = answer.error ? answer.error + hint : "";
    });
  }
  function later() {
    clearTimeout(timer);
    timer = setTimeout(render, 150);
  }
  form.addEventListener("input", later);
  values.addEventListener("input", later);
  render();
})();
