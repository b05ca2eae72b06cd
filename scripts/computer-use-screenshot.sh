#!/usr/bin/env bash
# Regenerates docs/computer-use-desktop.png, the desktop screenshot in docs/computer-use.md:
# runs test/e2b/desktop.test.ts (as root, the `desktop` template built), which saves what
# @e2b/desktop's screenshot() returned after typing into a terminal. Commit the PNG by hand.
set -euo pipefail
cd "$(dirname "$(readlink -f "$0")")/.."
bash scripts/setup.sh desktop
COVE_DESKTOP_SCREENSHOT="$PWD/docs/computer-use-desktop.png" \
  node_modules/.bin/vitest run test/e2b/desktop.test.ts
echo "wrote docs/computer-use-desktop.png"
