// An esbuild plugin for bundling spec entry files: package.json "sideEffects" lists only the
// package's entry files, so esbuild would drop the entry's bare imports of the setup file and
// the specs; this marks those imports (./test/*.ts from `entryName`) as having side effects.
// Shared by scripts/test.mjs (browser bundle) and scripts/node-lane.mjs (Node bundle).
import path from 'node:path';

export function specSideEffectsPlugin(root, entryName) {
  return {
    name: 'spec-side-effects',
    setup(build) {
      build.onResolve({filter: /^\.\/test\/.*\.ts$/}, args =>
        args.importer === path.join(root, entryName)
          ? {path: path.join(root, args.path), sideEffects: true}
          : undefined);
    },
  };
}
