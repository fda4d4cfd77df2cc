// Segment's browser SDK, unchanged: the page calls AnalyticsBrowser.load(...) itself.
import { AnalyticsBrowser } from "@segment/analytics-next";

window.SegmentSDK = { AnalyticsBrowser };
