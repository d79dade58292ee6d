/** The version of troupe, as `bridge_health` reports it (kept equal to package.json by a test). */
export const VERSION = "0.1.0";
