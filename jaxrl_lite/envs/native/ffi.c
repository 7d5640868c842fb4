/* The native step as an XLA FFI handler, appended to cstep.c when jaxlib's FFI headers
   are available (-DNB_FFI); see ffi.py. */
#ifdef NB_FFI
#include <stddef.h>
#include <stdlib.h>
#include <stdio.h>
#include <pthread.h>
#include "xla/ffi/api/c_api.h"

#define NB_SLOTS 256
typedef struct {
  long long key; int used, width_in, width_out;
  mjModel* m; void* batch; nb_job job; int* fields;
  pthread_mutex_t lock;
} nb_slot;
static nb_slot nb_slots[NB_SLOTS];
static pthread_mutex_t nb_slots_lock = PTHREAD_MUTEX_INITIALIZER;

static nb_slot* nb_find(long long key) {
  nb_slot* s = NULL;
  pthread_mutex_lock(&nb_slots_lock);
  for (int i = 0; i < NB_SLOTS && nb_slots[i].used; i++)
    if (nb_slots[i].key == key) { s = &nb_slots[i]; break; }
  pthread_mutex_unlock(&nb_slots_lock);
  return s;
}

/* A process-lifetime stepper under key: its own model copy, thread pool and job (the
   packed layout, n set per call). 0 on success (or if the key exists), -1 on error. */
int nb_ffi_register(long long key, const mjModel* m, int nthread, const nb_job* tmpl,
                    int width_in, int width_out, char* err, int err_sz) {
  int rc = 0;
  pthread_mutex_lock(&nb_slots_lock);
  int i = 0;
  while (i < NB_SLOTS && nb_slots[i].used && nb_slots[i].key != key) i++;
  if (i == NB_SLOTS) {
    snprintf(err, err_sz, "more than %d distinct native steppers in one process", NB_SLOTS);
    rc = -1;
  } else if (!nb_slots[i].used) {
    nb_slot* s = &nb_slots[i];
    s->m = mj_copyModel(NULL, m);
    s->batch = s->m ? nb_make(s->m, nthread, nthread, err, err_sz) : NULL;
    if (!s->batch) {
      if (s->m) mj_deleteModel(s->m);
      if (!s->m) snprintf(err, err_sz, "mj_copyModel failed");
      rc = -1;
    } else {
      s->job = *tmpl;
      /* Only the packed layout is used here: the template's float64 arrays belong to the
         caller and die with it, so no pointer to them is kept. */
      s->job.qpos = s->job.qvel = s->job.warm = s->job.ctrl = s->job.pos_before = NULL;
      s->job.fresh = NULL;
      s->job.out_qpos = s->job.out_qvel = s->job.out_warm = NULL;
      s->job.out_pos = s->job.out_dpos = s->job.out_fields = NULL;
      s->fields = (int*)malloc(sizeof(int) * (tmpl->nfield > 0 ? tmpl->nfield : 1));
      memcpy(s->fields, tmpl->fields, sizeof(int) * (tmpl->nfield > 0 ? tmpl->nfield : 1));
      s->job.fields = s->fields;
      s->width_in = width_in; s->width_out = width_out;
      pthread_mutex_init(&s->lock, NULL);
      s->key = key;
      s->used = 1;
    }
  }
  pthread_mutex_unlock(&nb_slots_lock);
  return rc;
}

static XLA_FFI_Error* nb_ffi_fail(const XLA_FFI_Api* api, XLA_FFI_Error_Code code,
                                  const char* msg) {
  XLA_FFI_Error_Create_Args a;
  a.struct_size = XLA_FFI_Error_Create_Args_STRUCT_SIZE;
  a.extension_start = NULL;
  a.message = msg;
  a.errc = code;
  return api->XLA_FFI_Error_Create(&a);
}

/* in float32 [..., width_in] -> out float32 [..., width_out]; attribute key (int64). */
XLA_FFI_Error* nb_ffi_step(XLA_FFI_CallFrame* f) {
  const XLA_FFI_Api* api = f->api;
  if (f->extension_start && f->extension_start->type == XLA_FFI_Extension_Metadata) {
    XLA_FFI_Metadata_Extension* e = (XLA_FFI_Metadata_Extension*)f->extension_start;
    e->metadata->api_version.struct_size = XLA_FFI_Api_Version_STRUCT_SIZE;
    e->metadata->api_version.extension_start = NULL;
    e->metadata->api_version.major_version = XLA_FFI_API_MAJOR;
    e->metadata->api_version.minor_version = XLA_FFI_API_MINOR;
    e->metadata->traits = 0;
    return NULL;
  }
  if (f->stage != XLA_FFI_ExecutionStage_EXECUTE) return NULL;
  if (f->args.size != 1 || f->rets.size != 1 || f->attrs.size != 1
      || f->args.types[0] != XLA_FFI_ArgType_BUFFER || f->rets.types[0] != XLA_FFI_RetType_BUFFER
      || f->attrs.types[0] != XLA_FFI_AttrType_SCALAR)
    return nb_ffi_fail(api, XLA_FFI_Error_Code_INVALID_ARGUMENT,
                       "jaxrl_lite native step: expects one buffer in, one out, attribute key");
  XLA_FFI_Buffer* in = (XLA_FFI_Buffer*)f->args.args[0];
  XLA_FFI_Buffer* out = (XLA_FFI_Buffer*)f->rets.rets[0];
  XLA_FFI_Scalar* key = (XLA_FFI_Scalar*)f->attrs.attrs[0];
  if (key->dtype != XLA_FFI_DataType_S64 || in->dtype != XLA_FFI_DataType_F32
      || out->dtype != XLA_FFI_DataType_F32 || in->rank < 1 || out->rank != in->rank)
    return nb_ffi_fail(api, XLA_FFI_Error_Code_INVALID_ARGUMENT,
                       "jaxrl_lite native step: float32 buffers and an int64 key expected");
  nb_slot* s = nb_find(*(long long*)key->value);
  if (!s)
    return nb_ffi_fail(api, XLA_FFI_Error_Code_NOT_FOUND,
                       "jaxrl_lite native step: no stepper registered under this key in "
                       "this process (make the env before running its compiled step)");
  long long n = 1;
  for (int k = 0; k + 1 < in->rank; k++) n *= in->dims[k];
  if (in->dims[in->rank - 1] != s->width_in || out->dims[out->rank - 1] != s->width_out)
    return nb_ffi_fail(api, XLA_FFI_Error_Code_INVALID_ARGUMENT,
                       "jaxrl_lite native step: buffer widths differ from the stepper's");
  char msg[400];
  int failed = -1;
  pthread_mutex_lock(&s->lock);
  s->job.n = (int)n;
  s->job.in_packed = (const float*)in->data;
  s->job.out_packed = (float*)out->data;
  if (n > 0) failed = nb_step(s->batch, &s->job);
  if (failed >= 0)
    snprintf(msg, sizeof msg, "MuJoCo raised an error while stepping: %s",
             nb_error(s->batch, failed));
  pthread_mutex_unlock(&s->lock);
  if (failed >= 0) return nb_ffi_fail(api, XLA_FFI_Error_Code_INTERNAL, msg);
  return NULL;
}
#endif
