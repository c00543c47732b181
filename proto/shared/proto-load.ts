// Reads the .proto files into gRPC service definitions with protobufjs
// directly: the same messages proto-loader would give (camelCase fields,
// longs as numbers, enums as strings, defaults, oneof markers) without the
// descriptor protos it also builds for reflection, which nothing here uses
// and which cost lxrctl a third of its start. The parsed files are cached
// as JSON beside the build (keyed by the files' sizes and mtimes), so a
// process reads JSON instead of parsing .proto text; a stale or missing
// cache is parsed afresh and rewritten when the directory is writable.
import { mkdirSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type * as grpc from '@grpc/grpc-js';
import protobuf from 'protobufjs';

/** What clients and servers get for each message (proto-loader's options of the same names). */
export const TO_OBJECT: protobuf.IConversionOptions = { longs: Number, enums: String, defaults: true, oneofs: true };

function cacheKey(dir: string, files: readonly string[]): string {
  return files
    .map((f) => {
      const st = statSync(path.join(dir, f));
      return `${f}:${st.size}:${st.mtimeMs}`;
    })
    .join(',');
}

/** The files (relative to `dir`) and what they import, resolved; from `cacheFile` when it is current. */
export function loadRoot(dir: string, files: readonly string[], cacheFile: string): protobuf.Root {
  const key = cacheKey(dir, files);
  try {
    const cached = JSON.parse(readFileSync(cacheFile, 'utf8')) as { key: string; root: protobuf.INamespace };
    if (cached.key === key) return protobuf.Root.fromJSON(cached.root);
  } catch {
    // Missing or unreadable: parse the .proto files.
  }
  const root = new protobuf.Root();
  root.resolvePath = (_origin, target) => (path.isAbsolute(target) ? target : path.join(dir, target));
  root.loadSync([...files], { keepCase: false });
  root.resolveAll();
  try {
    mkdirSync(path.dirname(cacheFile), { recursive: true });
    const tmp = `${cacheFile}.${process.pid}.tmp`;
    writeFileSync(tmp, JSON.stringify({ key, root: root.toJSON() }));
    renameSync(tmp, cacheFile);
  } catch {
    // A read-only install parses every time.
  }
  return root;
}

const lowerFirst = (s: string): string => s.charAt(0).toLowerCase() + s.slice(1);

/** grpc-js's definition of one service: paths, streaming, and (de)serializers over protobufjs types. */
export function serviceDefinition(root: protobuf.Root, fullName: string): grpc.ServiceDefinition {
  const svc = root.lookupService(fullName);
  const def: Record<string, grpc.MethodDefinition<unknown, unknown>> = {};
  for (const m of svc.methodsArray) {
    m.resolve();
    const req = m.resolvedRequestType!;
    const res = m.resolvedResponseType!;
    const serialize = (t: protobuf.Type) => (o: unknown): Buffer => {
      if (Array.isArray(o)) throw new Error(`cannot serialize an array as ${t.fullName}`);
      return t.encode(t.fromObject(o as Record<string, unknown>)).finish() as Buffer;
    };
    const deserialize = (t: protobuf.Type) => (b: Buffer): unknown => t.toObject(t.decode(b), TO_OBJECT);
    def[m.name] = {
      path: `/${fullName}/${m.name}`,
      requestStream: !!m.requestStream,
      responseStream: !!m.responseStream,
      requestSerialize: serialize(req),
      requestDeserialize: deserialize(req),
      responseSerialize: serialize(res),
      responseDeserialize: deserialize(res),
      originalName: lowerFirst(m.name),
    };
  }
  return def as grpc.ServiceDefinition;
}
