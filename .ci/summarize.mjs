// Reads vitest JSON reports and prints the closing line CI looks for ("vitest: N passed, N failed, N skipped").
// With two reports (a full run, then a re-run of the rig project), unit figures come from the first and rig
// figures from the second. Exit code 0 only when nothing failed and no test was left unrun.
import { readFileSync } from 'node:fs';

const [full, rerun] = process.argv.slice(2).map((p) => JSON.parse(readFileSync(p, 'utf8')));
const isRig = (name) => name.includes('/test/rig/');
const files = [...full.testResults.filter((f) => !rerun || !isRig(f.name)), ...(rerun ? rerun.testResults.filter((f) => isRig(f.name)) : [])];
let passed = 0, failed = 0, skipped = 0, unrun = 0;
for (const f of files) {
  for (const t of f.assertionResults) {
    if (t.status === 'passed') passed++;
    else if (t.status === 'failed') failed++;
    else if (t.status === 'skipped' || t.status === 'todo') skipped++;
    else unrun++; // 'pending': the file's worker died before the test ran
  }
  if (f.status === 'failed' && f.assertionResults.every((t) => t.status !== 'failed')) failed++; // a file that failed outside its tests
}
console.log(`vitest: ${passed} passed, ${failed + unrun} failed, ${skipped} skipped`);
process.exit(failed + unrun === 0 ? 0 : 1);
