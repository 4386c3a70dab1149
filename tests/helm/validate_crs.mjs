// Validates custom resources offline against their operators' published schemas (the npm packages
// of kubernetes-models, installed into .tools by `make tools`), for tests/helm/crds.py.
//
//   node validate_crs.mjs <tools dir>  < [resource, ...] (JSON)  > [[error, ...] per resource] (JSON)
//
// Two checks per resource, because each misses what the other catches:
// - the package's ajv validator (types, enums, patterns, ranges, required fields), which lets unknown
//   fields through, as the API server does when it prunes them silently;
// - TypeScript's excess-property check against the package's typings, which rejects unknown (say,
//   misspelt) fields, as `kubectl apply --validate=strict` would.
import path from "node:path";
import { readFileSync } from "node:fs";
import { pathToFileURL } from "node:url";

// kind -> [apiVersion, package, module inside it]; the module exports the model class `kind` and
// the typings interface `I<kind>`.
const MODELS = {
  ServiceMonitor: ["monitoring.coreos.com/v1", "@kubernetes-models/prometheus-operator", "monitoring.coreos.com/v1/ServiceMonitor"],
  PodMonitor: ["monitoring.coreos.com/v1", "@kubernetes-models/prometheus-operator", "monitoring.coreos.com/v1/PodMonitor"],
  PrometheusRule: ["monitoring.coreos.com/v1", "@kubernetes-models/prometheus-operator", "monitoring.coreos.com/v1/PrometheusRule"],
  ScaledObject: ["keda.sh/v1alpha1", "@kubernetes-models/keda", "keda.sh/v1alpha1/ScaledObject"],
  GRPCRoute: ["gateway.networking.k8s.io/v1", "@kubernetes-models/gateway-api", "gateway.networking.k8s.io/v1/GRPCRoute"],
  HTTPRoute: ["gateway.networking.k8s.io/v1", "@kubernetes-models/gateway-api", "gateway.networking.k8s.io/v1/HTTPRoute"],
};

const toolsDir = path.resolve(process.argv[2]);
const modules = path.join(toolsDir, "node_modules");
// Imported by file: the packages' export maps only offer `import` to code inside node_modules' reach.
const load = (file) => import(pathToFileURL(path.join(modules, file)).href);

function modelOf(resource) {
  const model = MODELS[resource.kind];
  if (!model) throw new Error(`no schema for kind ${resource.kind}`);
  if (resource.apiVersion !== model[0]) throw new Error(`apiVersion ${resource.apiVersion}, the schema is ${model[0]}`);
  return model;
}

async function schemaErrors(resource) {
  const [, pkg, module] = modelOf(resource);
  const Model = (await load(`${pkg}/${module}.js`))[resource.kind];
  try {
    new Model(resource).validate();
    return [];
  } catch (error) {
    return [error.message];
  }
}

// One TypeScript program typing every resource as its interface; errors grouped per resource.
function unknownFieldErrors(ts, resources) {
  const file = path.join(toolsDir, "chatstack-custom-resources.ts");
  const lines = [];
  const firstLine = [];
  for (const kind of new Set(resources.map((r) => r.kind))) {
    const [, pkg, module] = MODELS[kind];
    lines.push(`import type { I${kind} } from "${pkg}/${module}";`);
  }
  resources.forEach((resource, i) => {
    firstLine.push(lines.length);
    lines.push(...`export const r${i}: I${resource.kind} = ${JSON.stringify(resource, null, 1)};`.split("\n"));
  });
  const source = lines.join("\n");
  const options = {
    strict: true, noEmit: true, skipLibCheck: true, types: [],
    target: ts.ScriptTarget.ES2022, module: ts.ModuleKind.ESNext, moduleResolution: ts.ModuleResolutionKind.Bundler,
  };
  const host = ts.createCompilerHost(options);
  const { getSourceFile, fileExists, readFile } = host;
  host.getSourceFile = (name, ...rest) =>
    name === file ? ts.createSourceFile(name, source, ts.ScriptTarget.ES2022) : getSourceFile(name, ...rest);
  host.fileExists = (name) => name === file || fileExists(name);
  host.readFile = (name) => (name === file ? source : readFile(name));
  const program = ts.createProgram([file], options, host);
  const errors = resources.map(() => []);
  for (const diagnostic of ts.getPreEmitDiagnostics(program)) {
    // The resources are JSON, so TypeScript quotes their keys twice: '"honorLabel"'.
    const message = ts.flattenDiagnosticMessageText(diagnostic.messageText, "\n").replace(/'"([^"]*)"'/g, "'$1'");
    if (diagnostic.file?.fileName !== file || diagnostic.start === undefined) {
      throw new Error(`typings of the CRD packages do not compile: ${message}`);
    }
    const { line } = diagnostic.file.getLineAndCharacterOfPosition(diagnostic.start);
    const index = firstLine.findLastIndex((first) => first <= line);
    errors[index].push(`${message} (at: ${lines[line].trim()})`);
  }
  return errors;
}

const resources = JSON.parse(readFileSync(0, "utf8"));
const known = resources.map((resource) => {
  try { modelOf(resource); return true; } catch { return false; }
});
const results = await Promise.all(resources.map((r) => schemaErrors(r).catch((e) => [e.message])));
const ts = (await load("typescript/lib/typescript.js")).default;
const typed = resources.filter((_, i) => known[i]);
const typeErrors = unknownFieldErrors(ts, typed);
let next = 0;
resources.forEach((_, i) => {
  if (known[i]) results[i].push(...typeErrors[next++]);
});
process.stdout.write(JSON.stringify(results));
