// The release this build is: the one place the version string is written (`switchyard --version`).

/// Switchyard's version, semantic versioning; bumped by hand at a release.
let switchyardVersion = "0.1.0"
