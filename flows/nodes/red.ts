// The slice of the Node-RED 4 runtime API these nodes use. Node-RED ships no TypeScript types
// (and @types/node-red is not a dependency): declaring only what is called keeps `any` out.

/** A flow message: Node-RED's msg object, whose payload is whatever the sender put there. */
export interface NodeMessage {
  payload?: unknown;
  topic?: string;
  _msgid?: string;
  [key: string]: unknown;
}

export interface NodeStatus {
  fill?: 'red' | 'green' | 'yellow' | 'blue' | 'grey';
  shape?: 'ring' | 'dot';
  text?: string;
}

/** One output's message, several outputs' (an array, null where nothing goes out), or nothing. */
export type SendArg = NodeMessage | null | Array<NodeMessage | null>;

export interface NodeInstance {
  id: string;
  type: string;
  name?: string;
  on(event: 'input', listener: (msg: NodeMessage, send: (m: SendArg) => void, done: (err?: Error | string) => void) => void): void;
  on(event: 'close', listener: (removed: boolean, done: () => void) => void): void;
  send(msg: SendArg): void;
  status(status: NodeStatus): void;
  log(msg: string): void;
  warn(msg: string): void;
  /** With `msg`, a Catch node in the flow receives the error. */
  error(err: string, msg?: NodeMessage): void;
}

/** The config properties Node-RED hands a node's constructor: the editor's `defaults`, as stored. */
export interface NodeDef {
  id: string;
  type: string;
  name?: string;
  [key: string]: unknown;
}

export interface HttpResponse {
  json(body: unknown): void;
}

export type NodeConstructor = (this: NodeInstance, def: NodeDef) => void;

export interface NodeAPI {
  nodes: {
    createNode(node: NodeInstance, def: NodeDef): void;
    registerType(type: string, ctor: NodeConstructor, opts?: { credentials?: Record<string, { type: 'text' | 'password' }> }): void;
    getNode(id: string): NodeInstance | null;
  };
  httpAdmin: { get(path: string, ...handlers: Array<(req: unknown, res: HttpResponse, next: () => void) => void>): void };
  auth: { needsPermission(permission: string): (req: unknown, res: HttpResponse, next: () => void) => void };
}

/** The node as its constructor sees it: the runtime object plus what the constructor keeps on it. */
export type Credentials<K extends string> = Partial<Record<K, string>>;
