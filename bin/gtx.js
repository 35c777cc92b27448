#!/usr/bin/env node
// Entry point of the `gtx` CLI: registers the TypeScript loader, then runs the dispatcher.
import { register } from 'tsx/esm/api';

register();
await import('./cli.ts');
