// The shared module: what every LXR component (agent, controller, cli)
// imports instead of keeping its own copy.
export * from './errors.js';
export * from './log.js';
