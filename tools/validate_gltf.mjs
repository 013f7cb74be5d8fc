// Validate one .glb/.gltf file with the Khronos glTF validator (npm gltf-validator).
// Usage: node tools/validate_gltf.mjs FILE
// Prints the validator's JSON report on stdout; exit status 0 when it reports no error,
// 1 when it reports errors, 2 when the file cannot be read or validated.
import { readFile } from "node:fs/promises";
import path from "node:path";
import validator from "gltf-validator";

const file = process.argv[2];
if (!file) {
  console.error("usage: node tools/validate_gltf.mjs FILE");
  process.exit(2);
}
try {
  const bytes = new Uint8Array(await readFile(file));
  const report = await validator.validateBytes(bytes, {
    uri: path.basename(file),
    maxIssues: 0,
    externalResourceFunction: (uri) =>
      readFile(path.resolve(path.dirname(file), decodeURIComponent(uri))).then((b) => new Uint8Array(b)),
  });
  console.log(JSON.stringify(report, null, 1));
  process.exit(report.issues.numErrors > 0 ? 1 : 0);
} catch (err) {
  console.error(`validate_gltf: ${file}: ${err}`);
  process.exit(2);
}
