"use strict";
// Starts Swagger UI on the signed-in caller's /openapi.json (a file, so the CSP can forbid
// inline script).
document.addEventListener("DOMContentLoaded", () => {
  window.SwaggerUIBundle({url: "/openapi.json", dom_id: "#swagger-ui"});
});
