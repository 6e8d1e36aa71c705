(function(){
  "use strict";
  // Shared by the dashboard (served as /static/app.js) and stop report (inlined): no network.
  var state = window.__stopDashboard = window.__stopDashboard || {loadedAt: Date.now(), updates: 0, events: 0};
  function shown(sel){return Array.prototype.filter.call(document.querySelectorAll(sel),
    function(e){var r=e.getBoundingClientRect();return r.width>0&&r.height>0;}).length;}
  function selfCheck(){
    // What actually laid out with a non-zero size (read by the headless browser tests).
    var h=document.documentElement;
    h.dataset.renderedNodes=shown('#lineage-tree g.node');
    h.dataset.renderedPoints=shown('#plot svg circle.pt');
    h.dataset.renderedLines=shown('#plot svg polyline');
  }
  state.selfCheck = selfCheck;
  selfCheck();
  var expand=document.getElementById('expand');
  if(expand){expand.addEventListener('click',function(){
    var d=document.querySelectorAll('details');var open=this.dataset.open!=='1';
    d.forEach(function(x){x.open=open});this.dataset.open=open?'1':'0';
    this.textContent=open?'collapse all programs':'expand all programs';});}

  // ---- live updates: server-sent events name the fragments an event changed; re-fetch just those
  var body=document.body, stream=body.dataset.stream, frags=body.dataset.fragments;
  if(!stream||!frags||!window.EventSource){return;}
  var badge=document.getElementById('live');
  function mark(cls,text){if(badge){badge.className='live '+cls;badge.textContent=text;}}
  var dirty={}, timer=null, busy=false;
  function schedule(){if(!timer){timer=setTimeout(flush,250);}}
  function flush(){
    timer=null;
    var names=Object.keys(dirty);
    if(!names.length){return;}
    if(busy){schedule();return;}
    dirty={}; busy=true;
    fetch(frags+(frags.indexOf('?')<0?'?':'&')+'names='+encodeURIComponent(names.join(',')),
          {credentials:'same-origin',headers:{'Accept':'application/json'}})
      .then(function(r){if(!r.ok){throw new Error('HTTP '+r.status);}return r.json();})
      .then(function(parts){
        Object.keys(parts).forEach(function(k){
          document.querySelectorAll('[data-fragment="'+k+'"]').forEach(function(el){el.innerHTML=parts[k];});
        });
        state.updates++; selfCheck();
      })
      .catch(function(err){names.forEach(function(n){dirty[n]=1;}); mark('off','update failed: '+err.message);})
      .then(function(){busy=false; if(Object.keys(dirty).length){schedule();}});
  }
  var es=new EventSource(stream, {withCredentials:true});
  es.addEventListener('open',function(){mark('on','live');});
  es.addEventListener('error',function(){mark('off','reconnecting…');});
  es.addEventListener('append',function(m){
    var d; try{d=JSON.parse(m.data);}catch(e){return;}
    state.events++; state.lastEventId=m.lastEventId;
    (d.fragments||[]).forEach(function(f){dirty[f]=1;});
    mark('on','live · '+state.events+' new events');
    schedule();
  });
})();
