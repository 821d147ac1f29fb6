function m = qcanet_model(o)
%QCANET_MODEL  Load a qcanet model (called by qcanet_segment and qcanet_segment_file).
%   m = qcanet_model(o): o has fields nsn ('' = the model compiled into the library), ndn,
%   device (auto, cpu or cuda: the library's names) and threads. Free m with
%   calllib('qcanet', 'qca_model_free', m).
qcanet_lib('load');
opts = libstruct('QcaModelOptions');
% the structs are declared from the header shipped with this library (qcanet_lib checks the
% ABI), so the library's own size is the size of MATLAB's struct
qcanet_check(calllib('qcanet', 'qca_model_options_default', opts, calllib('qcanet', 'qca_struct_size', 'QcaModelOptions')), 'model options');
dev = libpointer('int32Ptr', int32(0));
qcanet_check(calllib('qcanet', 'qca_option_value', 'device', char(o.device), dev), 'choosing the device');
opts.device = dev.Value;
opts.num_threads = o.threads;
model = libpointer('voidPtrPtr', libpointer);
if isempty(o.nsn)
    qcanet_check(calllib('qcanet', 'qca_model_load_default', opts, model), 'loading the default model');
else
    ndn = o.ndn; if isempty(ndn), ndn = []; end
    qcanet_check(calllib('qcanet', 'qca_model_load', o.nsn, ndn, opts, model), 'loading the model');
end
m = model.Value;
end
