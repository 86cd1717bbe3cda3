// Test patients registered for training must never reach the EMR.
const family = (msg.get("PID-5-1") || "").toUpperCase();
if (family === "TEST" || family.startsWith("ZZTEST")) {
  return false;
}
