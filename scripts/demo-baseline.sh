#!/usr/bin/env bash
# Commit what `dvc repro` produced for git (dvc.lock, metrics/, plots/ and the .gitignore files DVC wrote for its
# outputs) on a branch of its own, `demo` (GWPE_DEMO_BRANCH), so the DVC experiment loop has a baseline right away:
#   dvc exp run -S flows.training.max_epochs=2 ; dvc exp show ; dvc metrics diff ; dvc plots diff
# Your branch is left as it was: `git switch -` goes back to it. Datasets and models stay in DVC's cache/remote.
set -euo pipefail
branch=${GWPE_DEMO_BRANCH:-demo}
if ! git rev-parse --git-dir >/dev/null 2>&1; then
    echo "not a git repository: no DVC baseline committed (git init, then rerun: bash scripts/demo-baseline.sh)"
    exit 0
fi
[ -f dvc.lock ] || { echo "no dvc.lock: run dvc repro first" >&2; exit 1; }
if [ "$(git branch --show-current)" != "$branch" ]; then
    git switch -q -C "$branch"  # the same commit as before plus, below, the pipeline's state
fi
ignores=$(git ls-files --others --exclude-standard -- '*.gitignore')
git add dvc.lock metrics plots $ignores
if git diff --cached --quiet; then
    echo "DVC baseline on branch $branch is up to date ($(git rev-parse --short HEAD))"
    exit 0
fi
# A fresh machine may have no git identity; the commit is the demo's, so it says so.
GIT_AUTHOR_NAME=${GIT_AUTHOR_NAME:-$(git config user.name || echo "gwpe demo")} \
GIT_AUTHOR_EMAIL=${GIT_AUTHOR_EMAIL:-$(git config user.email || echo "demo@gwpe.invalid")} \
GIT_COMMITTER_NAME=${GIT_COMMITTER_NAME:-$(git config user.name || echo "gwpe demo")} \
GIT_COMMITTER_EMAIL=${GIT_COMMITTER_EMAIL:-$(git config user.email || echo "demo@gwpe.invalid")} \
    git commit -q -m "DVC baseline of make demo: dvc.lock, metrics, plots (scripts/demo-baseline.sh)"
echo "DVC baseline committed on branch $branch ($(git rev-parse --short HEAD)); try: dvc exp run -S flows.training.max_epochs=2 && dvc exp show"
