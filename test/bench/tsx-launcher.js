// The `gtx` launcher as it was before the build step (bin/gtx.js up to 5f8f622): tsx compiles
// the TypeScript sources inside the process. `npm run bench:footprint` runs it for the "before" figure.
import { register } from 'tsx/esm/api';

register();
await import('../../bin/cli.ts');
