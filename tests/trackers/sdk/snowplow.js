// Snowplow's browser tracker and its e-commerce plugin, unchanged.
import * as tracker from "@snowplow/browser-tracker";
import * as ecommerce from "@snowplow/browser-plugin-snowplow-ecommerce";

window.SnowplowSDK = { ...tracker, ...ecommerce };
