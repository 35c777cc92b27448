export * from './ids.ts';
export * from './envelope.ts';
export * from './canonical.ts';
export * from './hash.ts';
export * from './signature.ts';
export * from './topics.ts';
export * from './messages.ts';
export * from './enrollment.ts';
