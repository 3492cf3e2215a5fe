#version 450
#extension GL_GOOGLE_include_directive : require
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_KHR_shader_subgroup_arithmetic : require
// Matrix-vector product with a subgroup reduction, for devices whose
// compute stage supports subgroup arithmetic (a separate module because
// the capability must not appear in the portable one).
#define USE_SUBGROUP 1
#include "matvec.glsl"
