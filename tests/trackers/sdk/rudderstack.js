// RudderStack's JavaScript SDK v3 (the build with its plugins bundled, so nothing is loaded
// from a CDN at run time), unchanged: the page calls load(...) itself.
import { RudderAnalytics } from "@rudderstack/analytics-js/bundled";

window.RudderSDK = { RudderAnalytics };
