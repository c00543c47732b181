// The registry client's public surface: HTTP API v2 pulls with auth,
// negotiation, platform choice, retries and mirrors.

export * from './auth.js';
export * from './client.js';
export * from './manifest.js';
export * from './mediatypes.js';
export * from './platform.js';
