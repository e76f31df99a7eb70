// Every third-party specifier the library uses, pinned. Source files import from here, never from
// bare specifiers: a module imported by URL does not see the importer's import map.
export { Decoder, Encoder, ExtensionCodec } from "npm:@msgpack/msgpack@3.1.3";
export { parse as parseJavaScript } from "npm:acorn@8.15.0";
