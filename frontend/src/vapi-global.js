// Puts the official SDK on the page as `window.Vapi`, for pages without a bundler of their own
// (the /demo/ page and the browser tests): `new Vapi(token, proxyUrl)`.
import Vapi from "@vapi-ai/web";

window.Vapi = Vapi;
