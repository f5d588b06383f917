// Our own tiny static programs for the real node: the sandbox image's pause process and
// what test containers run. No dependencies beyond the standard library.
module inferops.dev/devcluster/pause

go 1.26.0
