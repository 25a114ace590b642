// Umbrella header of the CProtobufC module: the protobuf-c runtime and the C code generated from
// Protos/ by Scripts/generate-protos.sh. Imported only by the Wire target.
#ifndef SWITCHYARD_CPROTOBUFC_H
#define SWITCHYARD_CPROTOBUFC_H
#include <protobuf-c/protobuf-c.h>
#include "wire.pb-c.h"
#endif
