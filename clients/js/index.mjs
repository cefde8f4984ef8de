#!/usr/bin/env node
// Vitrine from JavaScript: Search, then Recommend (more like a liked object), then SuggestTags
// for an object fetched from search, printed as one JSON document on stdout.
//
// The contract is loaded at run time from the .proto files (no generated code), so this folder
// needs only `npm ci`. Usage:
//   node index.mjs [--search HOST:PORT] [--tagger HOST:PORT] [--query TEXT] [--like ID]...
//                  [--object ID] [--page-size N] [--k N]
// Addresses default to $VITRINE_CLIENT_SEARCH / $VITRINE_CLIENT_TAGGER, then to `make run`'s
// ports. Without --like the first search hit is liked; without --object it is tagged.

import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

import grpc from '@grpc/grpc-js';
import protoLoader from '@grpc/proto-loader';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const PROTOS = process.env.VITRINE_CLIENT_PROTOS ?? path.resolve(HERE, '..', '..', 'protos');
const DEADLINE_MS = 30_000;

function options() {
  const { values } = parseArgs({
    options: {
      search: { type: 'string', default: process.env.VITRINE_CLIENT_SEARCH ?? '127.0.0.1:50053' },
      tagger: { type: 'string', default: process.env.VITRINE_CLIENT_TAGGER ?? '127.0.0.1:50052' },
      query: { type: 'string', default: 'ship in a storm at sea' },
      like: { type: 'string', multiple: true, default: [] },
      object: { type: 'string', default: '' },
      'page-size': { type: 'string', default: '5' },
      k: { type: 'string', default: '5' },
    },
  });
  const pageSize = Number.parseInt(values['page-size'], 10);
  const k = Number.parseInt(values.k, 10);
  if (!(pageSize > 0) || !(k > 0)) throw new Error('--page-size and --k take positive whole numbers');
  return { ...values, pageSize, k };
}

function loadContract() {
  // keepCase: the proto's own field names, as grpcurl and the Python stubs print them.
  const definition = protoLoader.loadSync(['vitrine/v1/search.proto', 'vitrine/v1/tagger.proto'], {
    includeDirs: [PROTOS],
    keepCase: true,
    longs: String,
    enums: String,
    defaults: true,
    oneofs: true,
  });
  return grpc.loadPackageDefinition(definition).vitrine.v1;
}

// One unary call as a promise, with a deadline so a stuck server cannot hang the script.
function call(client, method, request) {
  return new Promise((resolve, reject) => {
    const deadline = new Date(Date.now() + DEADLINE_MS);
    client[method](request, { deadline }, (error, response) => {
      if (error) {
        const name = Object.keys(grpc.status).find((key) => grpc.status[key] === error.code);
        reject(new Error(`${method} failed: ${name ?? error.code}: ${error.details}`));
      } else {
        resolve(response);
      }
    });
  });
}

const hits = (response) =>
  response.hits.map((hit) => ({ id: hit.object.id, title: hit.object.title, score: hit.score }));

async function main() {
  const args = options();
  const v1 = loadContract();
  const credentials = grpc.credentials.createInsecure();
  const search = new v1.SearchService(args.search, credentials);
  const tagger = new v1.TaggerService(args.tagger, credentials);
  try {
    const found = await call(search, 'Search', { query: args.query, page: { page_size: args.pageSize } });
    const first = found.hits[0]?.object.id;
    const liked = args.like.length > 0 ? args.like : first ? [first] : [];
    const objectId = args.object || first;
    if (liked.length === 0 || !objectId) {
      throw new Error(`no hits for "${args.query}": pass --like ID and --object ID`);
    }
    const recommended = await call(search, 'Recommend', { liked_ids: liked, k: args.k });
    const { object } = await call(search, 'GetObject', { id: objectId });
    const suggested = await call(tagger, 'SuggestTags', { object, k: args.k });
    const result = {
      search: { query: args.query, hits: hits(found), notices: found.notices },
      recommend: { liked_ids: liked, hits: hits(recommended) },
      suggest: {
        object_id: suggested.object_id,
        model_version: suggested.model_version,
        suggestions: suggested.suggestions.map((s) => ({
          tag: s.tag.id,
          label: s.tag.label,
          score: s.score,
          kind: s.kind,
          already_present: s.already_present,
        })),
      },
    };
    process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
  } finally {
    search.close();
    tagger.close();
  }
}

main().catch((error) => {
  process.stderr.write(`vitrine-client: ${error.message}\n`);
  process.exitCode = 1;
});
