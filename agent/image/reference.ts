// Image references ("golang", "ghcr.io/o/app:1.2@sha256:..."): Docker's
// reference grammar and normalisation (distribution/reference
// ParseNormalizedNamed), so a name means in LXR what it means to `docker pull`.

import { invalidArgument, type LxrError } from '../../proto/shared/errors.js';
import { parseDigest, type Digest } from './digest.js';

export interface Reference {
  /** Registry host[:port], normalised: "docker.io" for Docker Hub. */
  registry: string;
  /** Repository path within the registry: "library/golang", "user/app". */
  repository: string;
  tag?: string;
  digest?: Digest;
}

export const DOCKER_HUB = 'docker.io';
const LEGACY_DOCKER_HUB = 'index.docker.io';
const DOCKER_HUB_ENDPOINT = 'registry-1.docker.io';
const OFFICIAL_PREFIX = 'library/';
export const DEFAULT_TAG = 'latest';
/** Docker's NameTotalLengthMax: applies to registry + "/" + repository. */
export const NAME_MAX = 255;

// The grammar, piece by piece, as in distribution/reference/regexp.go.
const PATH_COMPONENT = /^[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*$/;
const DOMAIN_COMPONENT = /^(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])$/;
const IPV6_HOST = /^\[[a-fA-F0-9:]+\]$/;
const PORT = /^[0-9]+$/;
const TAG = /^[\w][\w.-]{0,127}$/;
// A bare 64-hex string is an image ID; Docker refuses it as a name so an ID
// is never silently pulled as "docker.io/library/<id>".
const IMAGE_ID = /^[a-f0-9]{64}$/;

function bad(input: string, problem: string): LxrError {
  return invalidArgument('image', `${JSON.stringify(input)}: ${problem}`);
}

/**
 * Docker's splitDockerDomain: the first path component is a registry when it
 * contains "." or ":", is "localhost", or has uppercase letters (repository
 * components cannot, domains may); otherwise the name is on Docker Hub, where
 * one-component names are official images under "library/".
 */
function splitRegistry(name: string): [registry: string, remainder: string] {
  const slash = name.indexOf('/');
  const first = slash < 0 ? '' : name.slice(0, slash);
  let registry: string;
  let remainder: string;
  if (slash < 0 || (!/[.:]/.test(first) && first !== 'localhost' && first.toLowerCase() === first)) {
    registry = DOCKER_HUB;
    remainder = name;
  } else {
    registry = first;
    remainder = name.slice(slash + 1);
  }
  if (registry === LEGACY_DOCKER_HUB) registry = DOCKER_HUB;
  if (registry === DOCKER_HUB && !remainder.includes('/')) remainder = OFFICIAL_PREFIX + remainder;
  return [registry, remainder];
}

function checkRegistry(input: string, registry: string): void {
  let host = registry;
  let port: string | undefined;
  // The port is what follows the last ':' outside an IPv6 literal's brackets.
  const close = registry.lastIndexOf(']');
  const colon = registry.lastIndexOf(':');
  if (colon > close) {
    host = registry.slice(0, colon);
    port = registry.slice(colon + 1);
  }
  if (port !== undefined && !PORT.test(port)) {
    throw bad(input, `registry port ${JSON.stringify(port)} must be digits`);
  }
  if (host.startsWith('[')) {
    if (!IPV6_HOST.test(host)) throw bad(input, `registry ${JSON.stringify(registry)} is not a valid IPv6 literal`);
    return;
  }
  if (host === '') throw bad(input, `registry ${JSON.stringify(registry)} has an empty host`);
  for (const component of host.split('.')) {
    if (!DOMAIN_COMPONENT.test(component)) {
      throw bad(input, `registry ${JSON.stringify(registry)} is not a valid host name (component ${JSON.stringify(component)})`);
    }
  }
}

function checkRepository(input: string, repository: string): void {
  if (repository.toLowerCase() !== repository) {
    throw bad(input, `repository name must be lowercase (${JSON.stringify(repository)})`);
  }
  for (const component of repository.split('/')) {
    if (component === '') throw bad(input, `repository ${JSON.stringify(repository)} has an empty path component`);
    if (!PATH_COMPONENT.test(component)) {
      throw bad(
        input,
        `repository path component ${JSON.stringify(component)} is invalid: use a-z and 0-9, joined by '.', '_', '__' or dashes, starting and ending with a letter or digit`,
      );
    }
  }
}

/**
 * Parses and normalises a reference as `docker pull` would. No default tag
 * is added (see withDefaultTag): "name" and "name:latest" stay distinct until
 * the caller decides. Every error is invalidArgument('image', ...) naming
 * the offending part.
 */
export function parseReference(s: string): Reference {
  if (typeof s !== 'string' || s === '') throw invalidArgument('image', 'reference is empty');
  if (/\s/.test(s)) throw bad(s, 'reference must not contain whitespace');
  if (IMAGE_ID.test(s)) throw bad(s, 'a 64-character hex string is an image ID, not a repository name');

  // Names and tags cannot contain '@', so the first one starts the digest.
  let rest = s;
  let digest: string | undefined;
  const at = s.indexOf('@');
  if (at >= 0) {
    rest = s.slice(0, at);
    digest = s.slice(at + 1);
    if (digest === '') throw bad(s, "digest after '@' is empty");
    try {
      parseDigest(digest);
    } catch (e) {
      throw bad(s, `invalid digest: ${(e as Error).message.replace(/^invalid argument digest: /, '')}`);
    }
  }
  if (rest === '') throw bad(s, 'repository name is empty');

  const [registry, remainder] = splitRegistry(rest);
  // The registry (and its port) is gone, so any ':' left starts the tag.
  let repository = remainder;
  let tag: string | undefined;
  const colon = remainder.indexOf(':');
  if (colon >= 0) {
    repository = remainder.slice(0, colon);
    tag = remainder.slice(colon + 1);
  }
  if (repository === '' || repository === OFFICIAL_PREFIX) throw bad(s, 'repository name is empty');
  checkRegistry(s, registry);
  checkRepository(s, repository);
  if (tag !== undefined) {
    if (tag === '') throw bad(s, "tag after ':' is empty");
    if (tag.length > 128) throw bad(s, `tag is ${tag.length} characters, at most 128 allowed`);
    if (!TAG.test(tag)) {
      throw bad(s, `tag ${JSON.stringify(tag)} is invalid: use letters, digits, '_', '.', '-', not starting with '.' or '-'`);
    }
  }
  const nameLength = registry.length + 1 + repository.length;
  if (nameLength > NAME_MAX) {
    throw bad(s, `repository name is ${nameLength} characters with its registry, at most ${NAME_MAX} allowed`);
  }

  const ref: Reference = { registry, repository };
  if (tag !== undefined) ref.tag = tag;
  if (digest !== undefined) ref.digest = digest;
  return ref;
}

/** registry/repository, without tag or digest. */
export function referenceName(ref: Reference): string {
  return `${ref.registry}/${ref.repository}`;
}

function suffix(ref: Reference): string {
  return (ref.tag !== undefined ? `:${ref.tag}` : '') + (ref.digest !== undefined ? `@${ref.digest}` : '');
}

/** The canonical, fully qualified form: "docker.io/library/golang:latest". */
export function referenceString(ref: Reference): string {
  return referenceName(ref) + suffix(ref);
}

/** The short form Docker shows users: "golang:latest", "user/app", "ghcr.io/o/a". */
export function familiarString(ref: Reference): string {
  let name = referenceName(ref);
  if (ref.registry === DOCKER_HUB) {
    name = ref.repository;
    // Only one-component official names are shortened: "library/a/b" is
    // not what "a/b" parses to, so it keeps its prefix.
    if (name.startsWith(OFFICIAL_PREFIX) && name.split('/').length === 2) {
      name = name.slice(OFFICIAL_PREFIX.length);
    }
  }
  return name + suffix(ref);
}

/** Docker's TagNameOnly: a reference with neither tag nor digest means ":latest". */
export function withDefaultTag(ref: Reference): Reference {
  if (ref.tag !== undefined || ref.digest !== undefined) return { ...ref };
  return { ...ref, tag: DEFAULT_TAG };
}

/**
 * The host[:port] to speak the registry API to. Docker Hub's name
 * ("docker.io") is not where its API lives.
 */
export function registryEndpoint(registry: string): string {
  if (registry === DOCKER_HUB || registry === LEGACY_DOCKER_HUB) return DOCKER_HUB_ENDPOINT;
  return registry;
}
