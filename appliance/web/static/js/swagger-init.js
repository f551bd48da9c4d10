// The API explorer, fed from this appliance's own OpenAPI document. validatorUrl: null keeps Swagger UI
// from calling its public validator: nothing leaves the appliance.
window.ui = SwaggerUIBundle({
  url: "/api/schema/openapi.json",
  dom_id: "#swagger-ui",
  validatorUrl: null,
  deepLinking: true,
  tryItOutEnabled: false,
});
