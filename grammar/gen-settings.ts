/**
 * Writes what the settings table (src/recipe/settings.ts) generates: grammar/qrecipe.schema.json and the
 * settings section of docs/recipes.md (between its `settings` markers). Tests fail when either drifts.
 * Run: npx tsx grammar/gen-settings.ts
 */
import { readFileSync } from 'node:fs';
import { writeFileAtomic } from '../src/ir/atomic-file.js';
import { recipeSchema } from '../src/recipe/schema.js';
import { SETTINGS_DOC_BEGIN, SETTINGS_DOC_END, settingsMarkdown } from '../src/recipe/settings.js';

const docsPath = new URL('../docs/recipes.md', import.meta.url).pathname;
const docs = readFileSync(docsPath, 'utf8');
const begin = docs.indexOf(SETTINGS_DOC_BEGIN);
const end = docs.indexOf(SETTINGS_DOC_END);
if (begin < 0 || end < begin) throw new Error(`docs/recipes.md lacks the markers ${SETTINGS_DOC_BEGIN} … ${SETTINGS_DOC_END}`);
writeFileAtomic(docsPath, `${docs.slice(0, begin + SETTINGS_DOC_BEGIN.length)}\n${settingsMarkdown()}\n${docs.slice(end)}`);
writeFileAtomic(new URL('qrecipe.schema.json', import.meta.url).pathname, `${JSON.stringify(recipeSchema, null, 2)}\n`);
