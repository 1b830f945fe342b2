// The theme's globals, read from this script tag's data attributes instead of an inline script
// (the docs' Content-Security-Policy forbids inline scripts).
var base_url = document.currentScript.dataset.baseUrl;
var shortcuts = JSON.parse(document.currentScript.dataset.shortcuts);
