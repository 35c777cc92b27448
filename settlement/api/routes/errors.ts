import { Type } from '@sinclair/typebox';

/** Every error the API returns: a stable code and a sentence a person can act on. */
export const ErrorSchema = Type.Object({ code: Type.String(), message: Type.String() });
